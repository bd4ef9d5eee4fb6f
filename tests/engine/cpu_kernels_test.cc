// The CPU matrix kernels of every dtype and instruction set against a
// double-precision reference of the dequantized weights, their batch
// invariance, the 16-bit conversions against hardware, and the RoPE
// frequencies against transformers' (via tests/engine/make_cpu_reference.py).
//
// Tolerances (per output element; S = sum_k |x_k * w_k| with w the
// dequantized weights):
// - F32, F16, BF16: |out - ref| <= k * 2^-24 * S, the worst-case bound of a
//   k-term fp32 sum; the stored weights are exact in fp32, so this is all the
//   error there is.
// - Q8_0: the same bound against the reference of the int8-quantized
//   activations (the integer dot products are exact), and against the
//   unquantized activations that plus half a quantization step per
//   activation: sum_blocks (scale_x / 2) * sum_{k in block} |w_k|.
#include <gtest/gtest.h>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <numeric>
#include <random>
#include <vector>

#include "engine/model/float16.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/matmul.h"
#include "engine/model/model_config.h"
#include "tests/testing/cpu_test_models.h"

namespace inferd::cpu {
namespace {

constexpr WeightType kTypes[] = {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0};
constexpr const char* kKernelSetNames[] = {"portable", "avx2", "avx512"};

std::vector<float> RandomFloats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// A [rows][cols] weight tensor of `type` from random floats.
struct TypedMatrix {
  std::vector<uint8_t> bytes;
  Tensor tensor;
  std::vector<float> dequantized;
};

TypedMatrix MakeMatrix(WeightType type, int rows, int cols, uint32_t seed) {
  TypedMatrix m;
  const std::vector<float> source = RandomFloats(static_cast<size_t>(rows) * cols, seed, 0.5f);
  const size_t row_bytes = RowBytes(type, cols);
  m.bytes.resize(row_bytes * rows);
  m.dequantized.resize(source.size());
  for (int r = 0; r < rows; ++r) {
    PortableKernels()[type].from_float(&source[static_cast<size_t>(r) * cols], &m.bytes[r * row_bytes], cols);
    PortableKernels()[type].to_float(&m.bytes[r * row_bytes], &m.dequantized[static_cast<size_t>(r) * cols], cols);
  }
  m.tensor = Tensor{type, m.bytes.data(), rows, cols};
  return m;
}

// `m` packed in 16-row panels by the layout's definition (model_weights.h),
// zero-padded. Floats: element (r, c) is element c * 16 + r % 16 of panel
// r / 16. Q8_0: a panel is its 16 rows' blocks in turn, 544 bytes each: the
// 16 fp16 scales, then quant (r, c) at 32 + (c % 32 / 4) * 64 + (r % 16) * 4
// + c % 4, stored + 128.
TypedMatrix PackByDefinition(const TypedMatrix& m) {
  const Tensor& t = m.tensor;
  TypedMatrix p;
  p.dequantized = m.dequantized;
  p.tensor = Tensor{t.type, nullptr, t.rows, t.cols, TensorLayout::kPanels16};
  p.bytes.assign(p.tensor.bytes(), 0);
  if (t.type == WeightType::kQ8_0) {
    const int64_t blocks = t.cols / 32, panel_bytes = blocks * 544;
    const uint8_t zero_block[34] = {};  // the padding rows: scale 0, quants 0 (stored as 128)
    for (int64_t r = 0; r < p.tensor.stored_rows(); ++r) {
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = r < t.rows ? &m.bytes[(r * blocks + b) * 34] : zero_block;
        uint8_t* panel_block = &p.bytes[(r / 16) * panel_bytes + b * 544];
        std::memcpy(panel_block + (r % 16) * 2, block, 2);
        for (int i = 0; i < 32; ++i) panel_block[32 + (i / 4) * 64 + (r % 16) * 4 + i % 4] = block[2 + i] ^ 0x80;
      }
    }
    p.tensor.data = p.bytes.data();
    return p;
  }
  const size_t element = RowBytes(t.type, 1);
  for (int64_t r = 0; r < t.rows; ++r) {
    for (int64_t c = 0; c < t.cols; ++c) {
      std::memcpy(&p.bytes[((r / 16) * t.cols * 16 + c * 16 + r % 16) * element], &m.bytes[(r * t.cols + c) * element],
                  element);
    }
  }
  p.tensor.data = p.bytes.data();
  return p;
}

// The layouts `set` multiplies weights of `type` in: row-major, and panels
// where it has a panel GEMM for the type.
std::vector<TensorLayout> LayoutsFor(const KernelSet& set, WeightType type) {
  std::vector<TensorLayout> layouts = {TensorLayout::kRowMajor};
  if (set[type].gemm_panels != nullptr) layouts.push_back(TensorLayout::kPanels16);
  return layouts;
}

// The matrix in `layout`.
TypedMatrix MakeMatrix(WeightType type, int rows, int cols, uint32_t seed, TensorLayout layout) {
  TypedMatrix m = MakeMatrix(type, rows, cols, seed);
  if (layout == TensorLayout::kPanels16) return PackByDefinition(m);
  return m;  // moved: tensor.data still points into bytes
}

const char* LayoutName(TensorLayout layout) { return layout == TensorLayout::kPanels16 ? "panels" : "row-major"; }

struct Shape {
  int rows, out, cols;
};

// Column counts that are multiples of 32 (Q8_0 needs them; 96 and 160 have
// an odd number of blocks, which the AVX-512 kernels take in pairs), plus,
// for the float types, ones with tails past the 8- and 16-wide steps.
std::vector<Shape> ShapesFor(WeightType type) {
  std::vector<Shape> shapes = {{1, 1, 32}, {3, 5, 64}, {5, 37, 256}, {9, 70, 128}, {70, 9, 96}, {17, 33, 160}};
  if (type != WeightType::kQ8_0) {
    shapes.push_back({6, 11, 37});
    shapes.push_back({13, 7, 200});
    shapes.push_back({2, 3, 5});
    shapes.push_back({9, 6, 2100});
  }
  return shapes;
}

// One test instance per kernel set; sets this CPU does not run skip.
class KernelSetTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    set_ = KernelSetNamed(GetParam());
    if (set_ == nullptr) GTEST_SKIP() << "this CPU (or build) does not run the " << GetParam() << " kernels";
  }
  const KernelSet* set_ = nullptr;
  ThreadPool pool_;  // every core this process may use
};

TEST_P(KernelSetTest, MatMulMatchesDoubleReferenceOfDequantizedWeights) {
  for (WeightType type : kTypes) {
    for (const Shape& s : ShapesFor(type)) {
     for (TensorLayout layout : LayoutsFor(*set_, type)) {
      SCOPED_TRACE(::testing::Message() << set_->isa << " " << WeightTypeName(type) << " " << LayoutName(layout)
                                        << " rows " << s.rows << " out " << s.out << " cols " << s.cols);
      const TypedMatrix w = MakeMatrix(type, s.out, s.cols, 100 + s.cols, layout);
      const std::vector<float> x = RandomFloats(static_cast<size_t>(s.rows) * s.cols, 200 + s.rows);
      std::vector<float> out(static_cast<size_t>(s.rows) * s.out);
      MatMul(pool_, *set_, x.data(), s.rows, w.tensor, out.data());

      // What the Q8_0 GEMM multiplies: the activations as quantized.
      std::vector<float> xq = x, x_scales;
      if (type == WeightType::kQ8_0) {
        std::vector<int8_t> q8(x.size());
        std::vector<int32_t> sums(x.size() / 32);
        x_scales.resize(x.size() / 32);
        QuantizeActivationsQ8(x.data(), s.rows, s.cols, q8.data(), x_scales.data(), sums.data());
        for (size_t i = 0; i < x.size(); ++i) xq[i] = x_scales[i / 32] * q8[i];
      }
      const double unit = std::ldexp(1.0, -24);
      for (int i = 0; i < s.rows; ++i) {
        for (int j = 0; j < s.out; ++j) {
          double ref = 0, ref_q = 0, magnitude = 0, quant_bound = 0;
          for (int k = 0; k < s.cols; ++k) {
            const double wk = w.dequantized[static_cast<size_t>(j) * s.cols + k];
            const size_t xi = static_cast<size_t>(i) * s.cols + k;
            ref += x[xi] * wk;
            ref_q += xq[xi] * wk;
            magnitude += std::fabs(xq[xi] * wk);
            if (type == WeightType::kQ8_0) quant_bound += x_scales[xi / 32] / 2 * std::fabs(wk);
          }
          const double got = out[static_cast<size_t>(i) * s.out + j];
          const double float_bound = s.cols * unit * magnitude;
          ASSERT_LE(std::fabs(got - ref_q), float_bound) << "element " << i << "," << j;
          ASSERT_LE(std::fabs(got - ref), float_bound + quant_bound * (1 + 1e-6)) << "element " << i << "," << j;
        }
      }
     }
    }
  }
}

// A row's result never depends on the other rows, their number, or the
// thread count: bit for bit.
TEST_P(KernelSetTest, MatMulIsBatchInvariant) {
  const int cols = 160, out = 45, rows = 71;  // tails in every tile dimension
  for (WeightType type : kTypes) {
   for (TensorLayout layout : LayoutsFor(*set_, type)) {
    SCOPED_TRACE(::testing::Message() << set_->isa << " " << WeightTypeName(type) << " " << LayoutName(layout));
    const TypedMatrix w = MakeMatrix(type, out, cols, 7, layout);
    const std::vector<float> x = RandomFloats(static_cast<size_t>(rows) * cols, 8);
    std::vector<float> batched(static_cast<size_t>(rows) * out), single(out), one_thread(batched.size());
    MatMul(pool_, *set_, x.data(), rows, w.tensor, batched.data());
    cpu::ThreadPool one(1);
    MatMul(one, *set_, x.data(), rows, w.tensor, one_thread.data());
    EXPECT_EQ(batched, one_thread);
    for (int i = 0; i < rows; ++i) {
      MatMul(pool_, *set_, &x[static_cast<size_t>(i) * cols], 1, w.tensor, single.data());
      ASSERT_TRUE(std::equal(single.begin(), single.end(), batched.begin() + static_cast<size_t>(i) * out))
          << "row " << i;
    }
    // Three rows from the middle, as their own batch.
    std::vector<float> three(3 * out);
    MatMul(pool_, *set_, &x[static_cast<size_t>(30) * cols], 3, w.tensor, three.data());
    EXPECT_TRUE(std::equal(three.begin(), three.end(), batched.begin() + static_cast<size_t>(30) * out));
   }
  }
}

// The GEMMs themselves, called on every split of rows and weight rows into
// runs of 1 to 9 (so every register-tile shape and remainder meets every
// element), agree bit for bit with one call over the whole matrix; k runs
// over lengths with and without vector tails. Runs of 9 and the whole 23
// rows take the AVX-512 path that decodes (Q8_0) or widens (16-bit) the
// weights once for all row tiles; runs of up to 8 read them in place.
TEST_P(KernelSetTest, GemmIsInvariantToRowAndOutputSplits) {
  for (WeightType type : kTypes) {
    for (int cols : {32, 96, 160, 768, 2048, 13, 47, 200, 2100}) {
      if (type == WeightType::kQ8_0 && cols % 32 != 0) continue;
      SCOPED_TRACE(::testing::Message() << set_->isa << " " << WeightTypeName(type) << " cols " << cols);
      const int rows = 23, n_out = 29;
      const TypedMatrix w = MakeMatrix(type, n_out, cols, 11 + cols);
      const std::vector<float> x = RandomFloats(static_cast<size_t>(rows) * cols, 12 + cols);
      std::vector<int8_t> q8(x.size());
      std::vector<float> scales(x.size() / 32 + 1);
      std::vector<int32_t> sums(scales.size());
      const TypeTraits& traits = (*set_)[type];
      if (traits.quantized_activations) {
        QuantizeActivationsQ8(x.data(), rows, cols, q8.data(), scales.data(), sums.data());
      }
      const size_t row_bytes = RowBytes(type, cols);
      auto gemm = [&](int m0, int m_count, int n0, int n_count, float* out) {
        const size_t offset = static_cast<size_t>(m0) * cols;
        const Activations part{m_count, cols, x.data() + offset, q8.data() + offset, scales.data() + offset / 32,
                               sums.data() + offset / 32};
        traits.gemm(part, w.bytes.data() + n0 * row_bytes, row_bytes, n_count, out + static_cast<size_t>(m0) * n_out + n0,
                    n_out);
      };
      std::vector<float> whole(static_cast<size_t>(rows) * n_out);
      gemm(0, rows, 0, n_out, whole.data());
      for (int run = 1; run <= 9; ++run) {
        std::vector<float> split(whole.size(), NAN);
        for (int m0 = 0; m0 < rows; m0 += run) {
          // Weight rows in runs of a different length, so splits cross.
          const int n_run = 10 - run;
          for (int n0 = 0; n0 < n_out; n0 += n_run) {
            gemm(m0, std::min(run, rows - m0), n0, std::min(n_run, n_out - n0), split.data());
          }
        }
        for (size_t e = 0; e < whole.size(); ++e) {
          ASSERT_EQ(std::bit_cast<uint32_t>(split[e]), std::bit_cast<uint32_t>(whole[e]))
              << "runs of " << run << ", element " << e / n_out << "," << e % n_out;
        }
      }
    }
  }
}

// The panel GEMMs on every split of rows into runs of 1 to 17 (every
// register-tile height, and the k spans taken past 8 rows) and of weight
// rows into runs of whole panels, against one call over the whole matrix:
// bit for bit, with k tails of every length.
TEST_P(KernelSetTest, PanelGemmIsInvariantToRowAndOutputSplits) {
  if (std::none_of(std::begin(kTypes), std::end(kTypes), [&](WeightType t) { return (*set_)[t].gemm_panels; })) {
    GTEST_SKIP() << "the " << set_->isa << " kernels multiply row-major weights only";
  }
  for (WeightType type : kTypes) {
    if ((*set_)[type].gemm_panels == nullptr) continue;
    const std::vector<int> widths = type == WeightType::kQ8_0 ? std::vector<int>{32, 96, 160, 768, 2048}
                                                              : std::vector<int>{1, 13, 160, 768, 2100};
    for (int cols : widths) {
      SCOPED_TRACE(::testing::Message() << set_->isa << " " << WeightTypeName(type) << " cols " << cols);
      const int rows = 37, n_out = 83;  // 6 panels, the last of 3 rows
      const TypedMatrix w = MakeMatrix(type, n_out, cols, 21 + cols, TensorLayout::kPanels16);
      const std::vector<float> x = RandomFloats(static_cast<size_t>(rows) * cols, 22 + cols);
      std::vector<int8_t> q8(x.size());
      std::vector<float> scales(x.size() / 32 + 1);
      std::vector<int32_t> sums(scales.size());
      if ((*set_)[type].quantized_activations) {
        QuantizeActivationsQ8(x.data(), rows, cols, q8.data(), scales.data(), sums.data());
      }
      const size_t panel_bytes = 16 * RowBytes(type, cols);
      auto gemm = [&](int m0, int m_count, int p0, int p_count, float* out) {
        const int n0 = 16 * p0, n_count = std::min(16 * p_count, n_out - n0);
        const size_t offset = static_cast<size_t>(m0) * cols;
        const Activations part{m_count, cols, x.data() + offset, q8.data() + offset, scales.data() + offset / 32,
                               sums.data() + offset / 32};
        (*set_)[type].gemm_panels(part, w.bytes.data() + p0 * panel_bytes, n_count,
                                  out + static_cast<size_t>(m0) * n_out + n0, n_out);
      };
      std::vector<float> whole(static_cast<size_t>(rows) * n_out);
      gemm(0, rows, 0, 6, whole.data());
      for (int run = 1; run <= 17; ++run) {
        std::vector<float> split(whole.size(), NAN);
        const int p_run = 1 + run % 4;
        for (int m0 = 0; m0 < rows; m0 += run) {
          for (int p0 = 0; p0 < 6; p0 += p_run) gemm(m0, std::min(run, rows - m0), p0, std::min(p_run, 6 - p0), split.data());
        }
        for (size_t e = 0; e < whole.size(); ++e) {
          ASSERT_EQ(std::bit_cast<uint32_t>(split[e]), std::bit_cast<uint32_t>(whole[e]))
              << "runs of " << run << ", element " << e / n_out << "," << e % n_out;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CpuKernels, KernelSetTest, ::testing::ValuesIn(kKernelSetNames),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

TEST(CpuKernels, SetsAreOrderedAndTheBestIsActive) {
  const std::vector<const KernelSet*> sets = AvailableKernelSets();
  ASSERT_FALSE(sets.empty());
  EXPECT_STREQ(sets.front()->isa, "portable");
  if (std::getenv("INFERD_CPU_KERNELS") == nullptr) {
    EXPECT_EQ(&ActiveKernels(), sets.back());
  }
  EXPECT_EQ(KernelSetNamed("avx512") != nullptr, Avx512Kernels() != nullptr);
  EXPECT_EQ(KernelSetNamed("sse9"), nullptr);
}

// INFERD_CPU_KERNELS picks the set for the process (in a fresh process, as
// the choice is made once); a set this CPU lacks logs one line and falls
// back to the best.
TEST(CpuKernelsDeathTest, EnvironmentChoosesTheSet) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const KernelSet* set : AvailableKernelSets()) {
    EXPECT_EXIT(
        {
          setenv("INFERD_CPU_KERNELS", set->isa, 1);
          std::exit(std::string(ActiveKernels().isa) == set->isa ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "")
        << set->isa;
  }
  const std::string best = AvailableKernelSets().back()->isa;
  EXPECT_EXIT(
      {
        setenv("INFERD_CPU_KERNELS", "sse9", 1);
        std::exit(std::string(ActiveKernels().isa) == best ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "INFERD_CPU_KERNELS=sse9 is not a kernel set this CPU runs .*; using " + best);
}

// SwiGLU's combine step, vectorized, is the scalar float formula bit for bit
// at every length (vector body plus scalar tail), over the whole range a
// gate takes: exp overflows, underflows and ties of the division included.
TEST(CpuKernels, SiluMulMatchesScalarFormula) {
  std::vector<float> gate = RandomFloats(1003, 11, 30.0f);
  const std::vector<float> up = RandomFloats(gate.size(), 12, 4.0f);
  const float specials[] = {0.0f, -0.0f, 88.8f, -88.8f, 104.0f, -104.0f, 1e-30f, -1e-30f, 3e38f, -3e38f, INFINITY,
                            -INFINITY};
  std::copy(std::begin(specials), std::end(specials), gate.begin() + 40);
  for (int count : {0, 1, 7, 8, 9, 1003}) {
    std::vector<float> got(gate.begin(), gate.begin() + count);
    SiluMul(got.data(), up.data(), count);
    for (int i = 0; i < count; ++i) {
      float v = gate[i];
      v *= 1.0f / (1.0f + std::exp(-v));
      const float want = v * up[i];
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want))
          << "count " << count << " i " << i << " gate " << gate[i] << ": " << got[i] << " vs " << want;
    }
  }
}

// The vectorized activation quantizer is ggml's scalar one bit for bit:
// roundf's ties away from zero included.
TEST(CpuKernels, QuantizeActivationsQ8MatchesScalarReference) {
  std::vector<float> x = RandomFloats(32 * 64, 5, 3.0f);
  // Blocks whose scale is exactly 1 and whose values are ties (n + 0.5).
  for (int b = 0; b < 8; ++b) {
    for (int i = 0; i < 32; ++i) x[b * 32 + i] = static_cast<float>((i * 7 + b) % 254 - 126) + (i % 2 ? 0.5f : -0.5f);
    x[b * 32 + 3] = b % 2 ? 127.0f : -127.0f;
  }
  std::fill(x.begin() + 8 * 32, x.begin() + 9 * 32, 0.0f);  // an all-zero block: scale 0, quants 0
  std::vector<int8_t> q(x.size());
  std::vector<float> scales(x.size() / 32);
  std::vector<int32_t> sums(scales.size());
  QuantizeActivationsQ8(x.data(), 8, 256, q.data(), scales.data(), sums.data());
  for (size_t b = 0; b < scales.size(); ++b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    ASSERT_EQ(std::bit_cast<uint32_t>(scales[b]), std::bit_cast<uint32_t>(d)) << "block " << b;
    for (int i = 0; i < 32; ++i) {
      ASSERT_EQ(q[b * 32 + i], static_cast<int8_t>(std::roundf(x[b * 32 + i] * id))) << "block " << b << " " << i;
    }
    EXPECT_EQ(sums[b], std::accumulate(&q[b * 32], &q[b * 32 + 32], 0)) << "block " << b;
  }
  EXPECT_EQ(q[1], static_cast<int8_t>(std::roundf(x[1])));  // a tie, away from zero
}

TEST(CpuKernels, DequantizeRowReadsEveryType) {
  const float values[32] = {0.5f, -1.25f, 3.0f, 0.0f, -0.75f, 2.0f, 1.0f, -2.5f};
  for (WeightType type : kTypes) {
    std::vector<uint8_t> bytes(2 * RowBytes(type, 32));
    std::vector<float> zeros(32, 0.0f);
    PortableKernels()[type].from_float(zeros.data(), bytes.data(), 32);
    PortableKernels()[type].from_float(values, bytes.data() + RowBytes(type, 32), 32);
    const Tensor t{type, bytes.data(), 2, 32};
    std::vector<float> row(32);
    DequantizeRow(t, 1, row.data());
    // Exact in the float formats (small dyadic values); Q8_0 within one
    // quantization step (half a step of rounding, plus the fp16 scale's).
    const float step = type == WeightType::kQ8_0 ? 3.0f / 127 : 0.0f;
    for (int i = 0; i < 32; ++i) EXPECT_LE(std::fabs(row[i] - values[i]), step) << WeightTypeName(type) << " " << i;
  }
}

// A row of a panel-packed matrix (a tied embedding, packed for the
// classifier's GEMM) reads back as the row it was.
TEST(CpuKernels, DequantizeRowReadsPanels) {
  for (WeightType type : kTypes) {
    const int cols = type == WeightType::kQ8_0 ? 96 : 50;
    const TypedMatrix m = MakeMatrix(type, 35, cols, 3);
    const TypedMatrix packed = PackByDefinition(m);
    std::vector<float> row(cols);
    for (int r = 0; r < 35; ++r) {
      DequantizeRow(packed.tensor, r, row.data());
      ASSERT_TRUE(std::equal(row.begin(), row.end(), m.dequantized.begin() + r * cols))
          << WeightTypeName(type) << " row " << r;
    }
  }
}

TEST(CpuKernels, Q8_0RowMatchesGgmlLayout) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = (i - 20) * (i < 32 ? 0.5f : -0.01f);
  std::vector<uint8_t> row(RowBytes(WeightType::kQ8_0, 64));
  ASSERT_EQ(row.size(), 68u);
  PortableKernels()[WeightType::kQ8_0].from_float(x.data(), row.data(), 64);
  for (int b = 0; b < 2; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    uint16_t d;
    std::memcpy(&d, &row[b * 34], 2);
    EXPECT_EQ(d, FloatToHalf(amax / 127)) << "block " << b;
    const int8_t* q = reinterpret_cast<const int8_t*>(&row[b * 34 + 2]);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(q[i], std::roundf(x[b * 32 + i] / (amax / 127))) << b << " " << i;
  }
}

#if defined(__F16C__)
TEST(Float16, HalfToFloatMatchesF16cOnEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float expected = _cvtsh_ss(static_cast<uint16_t>(h));
    const float got = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(expected)) << h;
    }
  }
}

TEST(Float16, FloatToHalfMatchesF16cRoundToNearestEven) {
  std::mt19937 rng(3);
  std::vector<float> values = {0.0f, -0.0f, 65504.0f, 65520.0f, 1e10f, -1e10f, 6e-8f, 3e-8f, 2.9e-8f, 1e-30f,
                               INFINITY, -INFINITY, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048};
  for (int i = 0; i < 200000; ++i) values.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  for (float f : values) {
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << f;
  }
}
#endif

TEST(Float16, FloatToBFloat16RoundsToNearestEven) {
  std::mt19937 rng(4);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (!std::isfinite(f)) continue;
    const uint16_t got = FloatToBFloat16(f);
    // The two bf16 neighbours of f, chosen by distance in double, ties to even.
    const uint16_t lower = static_cast<uint16_t>(std::bit_cast<uint32_t>(f) >> 16);
    const uint16_t upper = static_cast<uint16_t>(lower + 1);
    const double dl = std::fabs(static_cast<double>(f) - BFloat16ToFloat(lower));
    // Past the largest finite bf16 the next step up is 2^128 (inf).
    const double upper_value = (upper & 0x7FFF) == 0x7F80 ? std::copysign(std::ldexp(1.0, 128), f) : BFloat16ToFloat(upper);
    const double du = std::fabs(static_cast<double>(f) - upper_value);
    const uint16_t expected = dl < du ? lower : du < dl ? upper : (lower % 2 == 0 ? lower : upper);
    ASSERT_EQ(got, expected) << f;
  }
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(NAN))));
}

// RopeInverseFrequencies against transformers' float32 computation, done by
// numpy in make_cpu_reference.py (llama3 as in Llama 3.1 and 3.2, linear).
TEST(RopeFrequencies, MatchTransformers) {
  const nlohmann::json json = testing::ReferenceJson();
  ASSERT_EQ(json["rope_frequencies"].size(), 4u);
  for (const nlohmann::json& c : json["rope_frequencies"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ModelConfig config;
    config.dim = c["head_dim"];
    config.n_heads = 1;
    config.rope_theta = c["rope_theta"];
    if (!c["rope_scaling"].is_null()) {
      const nlohmann::json& s = c["rope_scaling"];
      config.rope_scaling.factor = s["factor"];
      if (s["rope_type"] == "linear") {
        config.rope_scaling.type = RopeScaling::Type::kLinear;
      } else {
        config.rope_scaling.type = RopeScaling::Type::kLlama3;
        config.rope_scaling.low_freq_factor = s["low_freq_factor"];
        config.rope_scaling.high_freq_factor = s["high_freq_factor"];
        config.rope_scaling.original_max_position_embeddings = s["original_max_position_embeddings"];
      }
    }
    const std::vector<float> got = RopeInverseFrequencies(config);
    const std::vector<double> expected = c["inv_freq"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_LE(std::fabs(got[i] - expected[i]), 1e-6 * expected[i]) << "pair " << i;
    }
  }
}

}  // namespace
}  // namespace inferd::cpu

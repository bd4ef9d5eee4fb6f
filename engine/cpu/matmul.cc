#include "engine/cpu/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/aligned_vector.h"
#include "engine/expf_x8.h"

namespace inferd::cpu {
namespace {

// Blocks of weight rows (the unit of parallel work) and of x rows, small
// enough that both stay in L2 while the tiles sweep over them (f32 at 2048
// inputs: 512 KB + 512 KB). Against 32 weight rows, 64 took 3-8% off the
// 512-token prefill and nothing from decode (forward_benchmark, A/B).
constexpr int kWeightBlock = 64;
constexpr int kRowBlock = 64;
// Weights packed in panels: three panels, the panel GEMM's register tile.
constexpr int kPanelBlock = 3 * kPanelRows;
// Below this many multiply-adds a product runs on the calling thread: waking
// a worker would cost more than it saves (tiny models).
constexpr int64_t kParallelMacs = int64_t{1} << 16;

bool IsPanels(const Tensor& w) { return w.layout == TensorLayout::kPanels16; }
int BlockRows(const Tensor& w) { return IsPanels(w) ? kPanelBlock : kWeightBlock; }
int NumBlocks(const Tensor& w) { return static_cast<int>((w.rows + BlockRows(w) - 1) / BlockRows(w)); }

// Panel-packed weights need the set's panel GEMM; the CPU backend packs only
// for a set that has one, so its absence is a caller's bug.
void CheckCanMultiply(const TypeTraits& traits, const Tensor& w) {
  if (IsPanels(w) && traits.gemm_panels == nullptr) {
    std::fprintf(stderr, "inferd: MatMul on panel-packed %s weights with a kernel set that has no panel GEMM\n",
                 std::string(WeightTypeName(w.type)).c_str());
    std::abort();
  }
}

// The activations as `traits`' GEMM reads them. Q8_0's quantized copy lives
// in grow-only buffers of the calling thread, so a steady workload
// allocates nothing; rows are quantized in parallel (each row on its own,
// so the split does not change the result).
Activations Prepare(ThreadPool& pool, const TypeTraits& traits, const float* x, int rows, int cols) {
  Activations act{rows, cols, x};
  if (!traits.quantized_activations) return act;
  thread_local AlignedVector<int8_t> q8;
  thread_local AlignedVector<float> scales;
  thread_local AlignedVector<int32_t> sums;
  const size_t n = static_cast<size_t>(rows) * cols;
  if (q8.size() < n) q8.resize(n);
  if (scales.size() < n / kQ8_0BlockSize) scales.resize(n / kQ8_0BlockSize);
  if (sums.size() < n / kQ8_0BlockSize) sums.resize(n / kQ8_0BlockSize);
  int8_t* q = q8.data();
  float* s = scales.data();
  int32_t* sum = sums.data();
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max(cols, 1));
  pool.ParallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    const int64_t block0 = begin * cols / kQ8_0BlockSize;
    QuantizeActivationsQ8(x + begin * cols, static_cast<int>(end - begin), cols, q + begin * cols, s + block0,
                          sum + block0);
  });
  act.q8 = q;
  act.q8_scales = s;
  act.q8_sums = sum;
  return act;
}

// out[m][n0 .. n0 + count) for activation rows m0 .. m0 + m_count, from
// weight rows n0 .. n0 + count of w; out's rows are w.rows apart.
void GemmRows(const TypeTraits& traits, const Activations& act, const Tensor& w, int n0, int count, int m0,
              int m_count, float* out) {
  const size_t row_bytes = RowBytes(w.type, w.cols);
  const int ldo = static_cast<int>(w.rows);
  // n0 is a multiple of the block rows, so of the panel rows.
  const char* block = static_cast<const char*>(w.data) + static_cast<size_t>(n0) * row_bytes;
  const size_t offset = static_cast<size_t>(m0) * act.cols;
  Activations part{m_count, act.cols, act.f32 + offset};
  if (act.q8 != nullptr) {
    part.q8 = act.q8 + offset;
    part.q8_scales = act.q8_scales + offset / kQ8_0BlockSize;
    part.q8_sums = act.q8_sums + offset / kQ8_0BlockSize;
  }
  float* o = out + static_cast<size_t>(m0) * ldo + n0;
  if (IsPanels(w)) {
    traits.gemm_panels(part, block, count, o, ldo);
  } else {
    traits.gemm(part, block, row_bytes, count, o, ldo);
  }
}

// The same for every activation row, kRowBlock rows at a time.
void GemmBlock(const TypeTraits& traits, const Activations& act, const Tensor& w, int n0, int count, float* out) {
  for (int m0 = 0; m0 < act.rows; m0 += kRowBlock) {
    GemmRows(traits, act, w, n0, count, m0, std::min(act.rows - m0, kRowBlock), out);
  }
}

// Blocks handed out one at a time, or all to the caller when the product
// is small.
int64_t Grain(int rows, int64_t out_features, int64_t in_features, int64_t blocks) {
  return static_cast<int64_t>(rows) * out_features * in_features < kParallelMacs ? blocks : 1;
}

}  // namespace

void MatMul(ThreadPool& pool, const KernelSet& kernels, const float* x, int rows, const Tensor& w, float* out) {
  const MatMulPart part{&w, out};
  FusedMatMul(pool, kernels, x, rows, absl::MakeConstSpan(&part, 1));
}

void FusedMatMul(ThreadPool& pool, const KernelSet& kernels, const float* x, int rows,
                 absl::Span<const MatMulPart> parts) {
  if (parts.empty() || rows == 0) return;
  const Tensor& first = *parts[0].w;
  for (const MatMulPart& p : parts) {
    if (p.w->type != first.type || p.w->cols != first.cols || p.w->layout != first.layout) {
      for (const MatMulPart& q : parts) MatMul(pool, kernels, x, rows, *q.w, q.out);
      return;
    }
  }
  const TypeTraits& traits = kernels[first.type];
  CheckCanMultiply(traits, first);
  const Activations act = Prepare(pool, traits, x, rows, static_cast<int>(first.cols));
  int64_t blocks = 0, out_features = 0;
  for (const MatMulPart& p : parts) {
    blocks += NumBlocks(*p.w);
    out_features += p.w->rows;
  }
  pool.ParallelFor(blocks, Grain(rows, out_features, first.cols, blocks), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      int64_t local = b;
      size_t i = 0;
      while (local >= NumBlocks(*parts[i].w)) local -= NumBlocks(*parts[i++].w);
      const Tensor& w = *parts[i].w;
      const int n0 = static_cast<int>(local) * BlockRows(w);
      GemmBlock(traits, act, w, n0, std::min<int>(static_cast<int>(w.rows) - n0, BlockRows(w)), parts[i].out);
    }
  });
}

void SwiGluMatMul(ThreadPool& pool, const KernelSet& kernels, const float* x, int rows, const Tensor& w1,
                  const Tensor& w3, float* out, float* up) {
  if (rows == 0) return;
  if (w1.layout != w3.layout) {  // blocks of different sizes: one after the other
    MatMul(pool, kernels, x, rows, w1, out);
    MatMul(pool, kernels, x, rows, w3, up);
    SiluMul(out, up, static_cast<int>(rows * w1.rows));
    return;
  }
  const TypeTraits& gate_traits = kernels[w1.type];
  const TypeTraits& up_traits = kernels[w3.type];
  CheckCanMultiply(gate_traits, w1);
  CheckCanMultiply(up_traits, w3);
  const int cols = static_cast<int>(w1.cols);
  const Activations gate_act = Prepare(pool, gate_traits, x, rows, cols);
  // Only Q8_0 quantizes, so two quantized types are the same type.
  const Activations up_act = w3.type == w1.type ? gate_act : Prepare(pool, up_traits, x, rows, cols);
  const int64_t hidden = w1.rows;
  const int64_t blocks = NumBlocks(w1);
  pool.ParallelFor(blocks, Grain(rows, 2 * hidden, cols, blocks), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int n0 = static_cast<int>(b) * BlockRows(w1);
      const int count = std::min<int>(static_cast<int>(hidden) - n0, BlockRows(w1));
      // Row block by row block, so that silu * up reads the block's gate and
      // up outputs while they are in L1 (over all 512 rows of a prefill they
      // had left it, and the combine stalled on its loads).
      for (int m0 = 0; m0 < rows; m0 += kRowBlock) {
        const int m_count = std::min(rows - m0, kRowBlock);
        GemmRows(gate_traits, gate_act, w1, n0, count, m0, m_count, out);
        GemmRows(up_traits, up_act, w3, n0, count, m0, m_count, up);
        for (int m = m0; m < m0 + m_count; ++m) {
          SiluMul(out + static_cast<size_t>(m) * hidden + n0, up + static_cast<size_t>(m) * hidden + n0, count);
        }
      }
    }
  });
}

// The vector loop does the scalar loop's operations lane by lane (ExpfX8
// is glibc's expf bit for bit), so where the split between the two falls
// never changes a value. A 512-token prefill takes 12.6 M exponentials.
void SiluMul(float* gate, const float* up, int count) {
  int i = 0;
#if INFERD_EXPF_X8
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (; i + 8 <= count; i += 8) {
    const __m256 v = _mm256_loadu_ps(gate + i);
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, ExpfX8(_mm256_xor_ps(v, sign))));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_mul_ps(v, s), _mm256_loadu_ps(up + i)));
  }
#endif
  for (; i < count; ++i) {
    float v = gate[i];
    v *= 1.0f / (1.0f + expf(-v));
    gate[i] = v * up[i];
  }
}

void DequantizeRow(const Tensor& t, int64_t r, float* out) {
  const TypeTraits& traits = ActiveKernels()[t.type];
  if (!IsPanels(t)) {
    traits.to_float(t.row(r), out, t.cols);
    return;
  }
  thread_local std::vector<char> row;
  row.resize(RowBytes(t.type, t.cols));
  GatherPanelRow(t.type, t.cols, r, t.data, row.data());
  traits.to_float(row.data(), out, t.cols);
}

}  // namespace inferd::cpu

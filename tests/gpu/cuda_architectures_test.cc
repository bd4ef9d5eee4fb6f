// The CUDA backend's side of the architecture switches (ModelConfig) and of
// weights held in their stored dtype: the conversion and q/k/v prologue
// kernels against host references; whole forward passes with each switch
// (llama3 and linear RoPE scaling, q/k/v biases, per-head q/k norms,
// head_dim != dim / n_heads) against the CPU backend; and F16, BF16
// and Q8_0 tensors uploaded as stored against the same values sent as fp32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/kernels.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/dummy_weights.h"
#include "tests/gpu/gpu_test_util.h"

namespace inferd {
namespace {

using cuda::Dtype;

// Q8_0 blocks of `values` (a multiple of 32), as GGUF quantizes: the scale
// is max|x| / 127 in fp16, q = round(x / scale).
std::vector<uint8_t> QuantizeQ8_0(const float* values, int64_t count) {
  std::vector<uint8_t> out(static_cast<size_t>(count / 32) * 34);
  for (int64_t b = 0; b < count / 32; ++b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(values[b * 32 + i]));
    const __half scale = __float2half_rn(amax / 127.0f);
    const float d = __half2float(scale);
    uint8_t* block = &out[static_cast<size_t>(b) * 34];
    std::memcpy(block, &scale, 2);
    for (int i = 0; i < 32; ++i) {
      const int q = d == 0.0f ? 0 : static_cast<int>(std::lround(values[b * 32 + i] / d));
      block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -127, 127)));
    }
  }
  return out;
}

// Element i of a stored tensor, in fp32 (the host's dequantization).
float StoredValue(WeightType type, const void* data, int64_t i) {
  switch (type) {
    case WeightType::kF32: return static_cast<const float*>(data)[i];
    case WeightType::kF16: return __half2float(static_cast<const __half*>(data)[i]);
    case WeightType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    case WeightType::kQ8_0: {
      const auto* block = static_cast<const uint8_t*>(data) + (i / 32) * 34;
      __half scale;
      std::memcpy(&scale, block, 2);
      return __half2float(scale) * static_cast<float>(static_cast<int8_t>(block[2 + i % 32]));
    }
  }
  return NAN;
}

// `values` stored as `type` (bytes kept alive by `owners`).
Tensor StoreAs(WeightType type, const Tensor& f32, std::vector<std::shared_ptr<const void>>* owners) {
  const int64_t n = f32.rows * f32.cols;
  auto bytes = std::make_shared<std::vector<uint8_t>>();
  if (type == WeightType::kQ8_0) {
    *bytes = QuantizeQ8_0(f32.f32(), n);
  } else {
    bytes->resize(static_cast<size_t>(n) * (type == WeightType::kF32 ? 4 : 2));
    for (int64_t i = 0; i < n; ++i) {
      const float v = f32.f32()[i];
      if (type == WeightType::kF32) {
        std::memcpy(&(*bytes)[i * 4], &v, 4);
      } else if (type == WeightType::kF16) {
        const __half h = __float2half_rn(v);
        std::memcpy(&(*bytes)[i * 2], &h, 2);
      } else {
        const __nv_bfloat16 b = __float2bfloat16_rn(v);
        std::memcpy(&(*bytes)[i * 2], &b, 2);
      }
    }
  }
  owners->push_back(bytes);
  return Tensor{type, bytes->data(), f32.rows, f32.cols};
}

// An fp32 tensor of the stored tensor's values (what the host reads it as).
Tensor Dequantized(const Tensor& t, std::vector<std::shared_ptr<const void>>* owners) {
  auto values = std::make_shared<std::vector<float>>(static_cast<size_t>(t.rows * t.cols));
  for (size_t i = 0; i < values->size(); ++i) (*values)[i] = StoredValue(t.type, t.data, static_cast<int64_t>(i));
  owners->push_back(values);
  return Tensor{WeightType::kF32, values->data(), t.rows, t.cols};
}

// Every matrix of `w` passed through `f` (norms and biases stay).
template <typename F>
void ForEachMatrix(ModelWeights* w, F f) {
  const bool tied = w->wcls.data == w->token_embedding.data;
  w->token_embedding = f(w->token_embedding);
  for (LayerWeights& l : w->layers) {
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) *t = f(*t);
  }
  w->wcls = tied ? w->token_embedding : f(w->wcls);
}

// Seeded dummy weights for `c`, with random biases and q/k norms where the
// config has them.
std::shared_ptr<ModelWeights> DummyWithExtras(const ModelConfig& c, uint32_t seed) {
  absl::StatusOr<std::unique_ptr<ModelWeights>> made = MakeDummyWeights(c, seed);
  EXPECT_TRUE(made.ok()) << made.status();
  if (!made.ok()) return nullptr;
  std::shared_ptr<ModelWeights> w(*std::move(made));
  std::mt19937 rng(seed);
  auto vector = [&](int64_t n, float mean, float scale) {
    auto v = std::make_shared<std::vector<float>>(gpu_test::RandomVector(static_cast<size_t>(n), rng, scale));
    for (float& x : *v) x += mean;
    w->owners.push_back(v);
    return Tensor{WeightType::kF32, v->data(), 1, n};
  };
  for (LayerWeights& l : w->layers) {
    if (c.attention_bias) {
      l.bq = vector(c.q_dim(), 0.0f, 0.5f);
      l.bk = vector(c.kv_dim(), 0.0f, 0.5f);
      l.bv = vector(c.kv_dim(), 0.0f, 0.5f);
    }
    if (c.qk_norm) {
      l.q_norm = vector(c.head_dim(), 1.0f, 0.2f);
      l.k_norm = vector(c.head_dim(), 1.0f, 0.2f);
    }
  }
  return w;
}

TEST(ConvertWeights, EveryStoredTypeToEveryServingDtype) {
  INFERD_REQUIRE_GPU();
  std::mt19937 rng(gpu_test::FreshSeed());
  const std::vector<float> values = gpu_test::RandomVector(32 * 1000, rng, 0.05f);
  const Tensor f32{WeightType::kF32, values.data(), 1000, 32};
  for (const WeightType type : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0}) {
    std::vector<std::shared_ptr<const void>> owners;
    const Tensor stored = StoreAs(type, f32, &owners);
    const cuda::StoredType st = type == WeightType::kF32    ? cuda::StoredType::kF32
                                : type == WeightType::kF16  ? cuda::StoredType::kF16
                                : type == WeightType::kBF16 ? cuda::StoredType::kBF16
                                                            : cuda::StoredType::kQ8_0;
    gpu_test::DeviceBuffer src(stored.bytes());
    INFERD_ASSERT_CUDA(cudaMemcpy(src.get(), stored.data, stored.bytes(), cudaMemcpyHostToDevice));
    for (const Dtype dtype : gpu_test::AllDtypes()) {
      gpu_test::DeviceBuffer dst(values.size() * cuda::DtypeSize(dtype));
      INFERD_ASSERT_CUDA(cuda::LaunchConvertWeights(st, src.get(), static_cast<int64_t>(values.size()), dtype,
                                                    dst.get(), 0));
      INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
      const std::vector<float> got = gpu_test::Download(dtype, dst.get(), values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        const float want = gpu_test::RoundTo(dtype, StoredValue(type, stored.data, static_cast<int64_t>(i)));
        ASSERT_EQ(got[i], want) << WeightTypeName(type) << " -> " << cuda::DtypeName(dtype) << " element " << i;
      }
    }
  }
}

TEST(QkvPrologue, BiasThenPerHeadNormMatchReference) {
  INFERD_REQUIRE_GPU();
  std::mt19937 rng(gpu_test::FreshSeed());
  const int tokens = 5, n_heads = 4, n_kv = 2, hd = 128, stride = (n_heads + 2 * n_kv) * hd;
  const float eps = 1e-6f;
  const std::vector<float> bias = gpu_test::RandomVector(stride, rng);
  std::vector<float> qn = gpu_test::RandomVector(hd, rng, 0.3f), kn = gpu_test::RandomVector(hd, rng, 0.3f);
  for (float& x : qn) x += 1.0f;
  for (float& x : kn) x += 1.0f;
  for (const Dtype dtype : gpu_test::AllDtypes()) {
    for (const bool with_norm : {false, true}) {
      const std::vector<float> qkv = gpu_test::RoundAll(dtype, gpu_test::RandomVector(size_t(tokens) * stride, rng));
      gpu_test::DeviceBuffer d_qkv = gpu_test::Upload(dtype, qkv);
      gpu_test::DeviceBuffer d_bias = gpu_test::UploadFloats(bias), d_qn = gpu_test::UploadFloats(qn),
                             d_kn = gpu_test::UploadFloats(kn);
      INFERD_ASSERT_CUDA(cuda::LaunchQkvPrologue(dtype, d_qkv.get(), stride, tokens, n_heads, n_kv, hd,
                                                 d_bias.as<float>(), with_norm ? d_qn.as<float>() : nullptr,
                                                 with_norm ? d_kn.as<float>() : nullptr, eps, 0));
      INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
      const std::vector<float> got = gpu_test::Download(dtype, d_qkv.get(), qkv.size());
      double worst = 0.0;
      for (int t = 0; t < tokens; ++t) {
        for (int h = 0; h < n_heads + 2 * n_kv; ++h) {
          std::vector<float> want(hd), row(hd);
          double ss = 0.0;
          for (int i = 0; i < hd; ++i) {
            want[i] = qkv[size_t(t) * stride + h * hd + i] + bias[h * hd + i];
            ss += double{want[i]} * want[i];
            row[i] = got[size_t(t) * stride + h * hd + i];
          }
          const std::vector<float>* norm = !with_norm ? nullptr : h < n_heads ? &qn : h < n_heads + n_kv ? &kn : nullptr;
          if (norm != nullptr) {
            const double scale = 1.0 / std::sqrt(ss / hd + eps);
            for (int i = 0; i < hd; ++i) want[i] = static_cast<float>(want[i] * scale * (*norm)[i]);
          }
          worst = std::max(worst, gpu_test::RelativeError(row, want));
        }
      }
      EXPECT_LE(worst, gpu_test::RowTolerance(dtype)) << cuda::DtypeName(dtype) << (with_norm ? " with norm" : "");
    }
  }
}

struct SwitchCase {
  const char* name;
  void (*apply)(ModelConfig*);
};

void PrintTo(const SwitchCase& c, std::ostream* os) { *os << c.name; }

ModelConfig BaseConfig() {
  ModelConfig c;
  c.name = "dummy:switches";
  c.dim = 256;
  c.hidden_dim = 512;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 600;
  c.max_seq_len = 512;
  c.shared_classifier = false;
  c.rope_theta = 500000.0f;
  return c;
}

std::vector<SwitchCase> SwitchCases() {
  return {
      {"rope_llama3_scaling",
       [](ModelConfig* c) {
         c->rope_scaling.type = RopeScaling::Type::kLlama3;
         c->rope_scaling.factor = 8.0f;
         c->rope_scaling.original_max_position_embeddings = 64;
       }},
      {"rope_linear_scaling",
       [](ModelConfig* c) {
         c->rope_scaling.type = RopeScaling::Type::kLinear;
         c->rope_scaling.factor = 4.0f;
       }},
      {"qkv_bias_qwen2",
       [](ModelConfig* c) {
         c->attention_bias = true;
       }},
      {"qk_norm_head_dim_qwen3",
       [](ModelConfig* c) {
         c->qk_norm = true;
         c->explicit_head_dim = 128;  // q_dim 512 != dim 256
         c->rms_norm_eps = 1e-6f;
       }},
  };
}

class SwitchTest : public ::testing::TestWithParam<SwitchCase> {};

// Prefill then decodes, fp32 and bf16, row by row against the CPU backend.
TEST_P(SwitchTest, ForwardMatchesCpuBackend) {
  INFERD_REQUIRE_GPU();
  ModelConfig c = BaseConfig();
  GetParam().apply(&c);
  std::shared_ptr<const ModelWeights> weights = DummyWithExtras(c, 21);
  ASSERT_NE(weights, nullptr);
  absl::StatusOr<std::unique_ptr<CpuBackend>> cpu = CpuBackend::Create(weights, {32, 16});
  if (!cpu.ok() && cpu.status().code() == absl::StatusCode::kUnimplemented) {
    GTEST_SKIP() << "no CPU reference for this switch yet: " << cpu.status();
  }
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  for (const char* dtype : {"float32", "bfloat16"}) {
    SCOPED_TRACE(dtype);
    CudaBackendOptions o;
    o.dtype = dtype;
    o.kv.num_blocks = 32;
    o.kv.block_size = 16;
    o.max_num_seqs = 4;
    o.max_num_batched_tokens = 256;
    absl::StatusOr<std::unique_ptr<Backend>> gpu = CreateCudaBackend(weights, o);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    absl::StatusOr<std::unique_ptr<CpuBackend>> ref = CpuBackend::Create(weights, {32, 16});
    ASSERT_TRUE(ref.ok());
    std::mt19937 rng(gpu_test::FreshSeed());
    std::vector<int> tokens = {1};
    for (int i = 0; i < 140; ++i) tokens.push_back(3 + static_cast<int>(rng() % (c.vocab_size - 3)));
    const std::vector<int> table = {5, 2, 9, 11, 0, 7, 3, 20, 14, 1, 30, 6};
    int computed = 0;
    for (int step = 0; step < 8; ++step) {
      const int n = step == 0 ? static_cast<int>(tokens.size()) : 1;
      StepBatch batch;
      batch.AddSequence(absl::MakeConstSpan(tokens).subspan(computed, n), computed + n, table, true);
      computed += n;
      std::vector<float> want(c.vocab_size), got(c.vocab_size, NAN);
      ASSERT_TRUE((*ref)->Forward(batch, absl::MakeSpan(want)).ok());
      const absl::Status s = (*gpu)->Forward(batch, absl::MakeSpan(got));
      ASSERT_TRUE(s.ok()) << s;
      float scale = 1.0f;
      for (float v : want) scale = std::max(scale, std::fabs(v));
      const float tolerance = std::string(dtype) == "float32" ? 1e-4f * scale : 0.05f * scale;
      EXPECT_LE(gpu_test::MaxAbsDiff(want.data(), got.data(), c.vocab_size), tolerance) << "step " << step;
      tokens.push_back(gpu_test::ArgMax(want.data(), c.vocab_size));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Switches, SwitchTest, ::testing::ValuesIn(SwitchCases()),
                         [](const ::testing::TestParamInfo<SwitchCase>& info) { return info.param.name; });

// Tensors uploaded as stored (converted on the device) give the logits of
// the same values sent as fp32: every F16/BF16/Q8_0 value is exact in fp32,
// so both paths round the same numbers to the serving dtype.
TEST(StoredTypes, UploadAsStoredEqualsUploadOfTheirValues) {
  INFERD_REQUIRE_GPU();
  ModelConfig c = BaseConfig();
  c.attention_bias = true;
  c.qk_norm = true;
  std::shared_ptr<ModelWeights> base = DummyWithExtras(c, 5);
  ASSERT_NE(base, nullptr);
  for (const WeightType type : {WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0}) {
    SCOPED_TRACE(std::string(WeightTypeName(type)));
    auto stored = std::make_shared<ModelWeights>(*base);
    ForEachMatrix(stored.get(), [&](const Tensor& t) { return StoreAs(type, t, &stored->owners); });
    stored->dtype = type;
    auto values = std::make_shared<ModelWeights>(*stored);
    ForEachMatrix(values.get(), [&](const Tensor& t) { return Dequantized(t, &values->owners); });
    values->dtype = WeightType::kF32;
    for (const char* dtype : {"bfloat16", "float32"}) {
      CudaBackendOptions o;
      o.dtype = dtype;
      o.kv.num_blocks = 16;
      o.kv.block_size = 16;
      o.max_num_seqs = 2;
      o.max_num_batched_tokens = 64;
      absl::StatusOr<std::unique_ptr<Backend>> a = CreateCudaBackend(stored, o);
      absl::StatusOr<std::unique_ptr<Backend>> b = CreateCudaBackend(values, o);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ((*a)->dtype(), dtype);
      const std::vector<int> prompt = {1, 17, 400, 23, 99, 5, 310};
      const std::vector<int> table = {3, 1};
      StepBatch batch;
      batch.AddSequence(prompt, static_cast<int>(prompt.size()), table, true);
      std::vector<float> la(c.vocab_size, NAN), lb(c.vocab_size, NAN);
      ASSERT_TRUE((*a)->Forward(batch, absl::MakeSpan(la)).ok());
      ASSERT_TRUE((*b)->Forward(batch, absl::MakeSpan(lb)).ok());
      EXPECT_EQ(gpu_test::MaxAbsDiff(la.data(), lb.data(), c.vocab_size), 0.0f) << dtype;
    }
  }
}

// A missing tensor the config implies (a bias) is a clear error, not a crash.
TEST(StoredTypes, MissingBiasIsInvalidArgument) {
  INFERD_REQUIRE_GPU();
  ModelConfig c = BaseConfig();
  c.attention_bias = true;
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(c, 1);  // no biases
  ASSERT_TRUE(w.ok()) << w.status();
  CudaBackendOptions o;
  o.kv.num_blocks = 8;
  const absl::Status s = CreateCudaBackend(std::shared_ptr<const ModelWeights>(*std::move(w)), o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

}  // namespace
}  // namespace inferd

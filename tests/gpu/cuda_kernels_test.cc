// The CUDA backend's elementwise and row kernels against CPU references on
// fresh random inputs, in every serving dtype; outputs are poisoned with NaN
// first, so an element a kernel did not write fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/kernels.h"
#include "tests/gpu/gpu_test_util.h"

namespace inferd {
namespace {

using cuda::Dtype;
using gpu_test::DeviceBuffer;
using gpu_test::Download;
using gpu_test::RelativeError;
using gpu_test::RoundAll;
using gpu_test::RoundTo;
using gpu_test::Tolerance;
using gpu_test::Upload;

class KernelTest : public ::testing::TestWithParam<Dtype> {
 protected:
  Dtype dtype() const { return GetParam(); }
  std::mt19937 rng_{gpu_test::FreshSeed()};
};

TEST_P(KernelTest, EmbeddingGathersRows) {
  INFERD_REQUIRE_GPU();
  const int vocab = 1000, dim = 320, tokens = 37;
  const std::vector<float> table = RoundAll(dtype(), gpu_test::RandomVector(size_t(vocab) * dim, rng_));
  std::vector<int> ids(tokens);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  for (int& id : ids) id = pick(rng_);
  DeviceBuffer d_table = Upload(dtype(), table);
  DeviceBuffer d_ids = gpu_test::UploadInts(ids);
  DeviceBuffer d_x(size_t(tokens) * dim * sizeof(float));
  INFERD_ASSERT_CUDA(cuda::LaunchEmbedding(dtype(), d_table.get(), d_ids.as<int>(), tokens, dim, d_x.as<float>(), 0));
  INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> x = Download(Dtype::kFloat32, d_x.get(), size_t(tokens) * dim);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < dim; ++i) {
      ASSERT_EQ(x[size_t(t) * dim + i], table[size_t(ids[t]) * dim + i]) << "token " << t << " dim " << i;
    }
  }
}

// x += delta; out = w * x / sqrt(mean(x^2) + eps), in double.
void ReferenceAddRmsNorm(std::vector<float>* x, const std::vector<float>* delta, const std::vector<float>& w,
                         float eps, int rows, int dim, std::vector<float>* out) {
  out->resize(size_t(rows) * dim);
  for (int r = 0; r < rows; ++r) {
    float* xr = x->data() + size_t(r) * dim;
    double ss = 0.0;
    for (int i = 0; i < dim; ++i) {
      if (delta != nullptr) xr[i] += (*delta)[size_t(r) * dim + i];
      ss += double{xr[i]} * xr[i];
    }
    const double scale = 1.0 / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i) (*out)[size_t(r) * dim + i] = static_cast<float>(w[i] * (scale * xr[i]));
  }
}

TEST_P(KernelTest, AddRmsNormMatchesReference) {
  INFERD_REQUIRE_GPU();
  for (const int dim : {64, 1000, 4096}) {
    for (const bool with_delta : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dim " << dim << (with_delta ? " with delta" : " without delta"));
      const int rows = 19;
      const float eps = 1e-5f;
      std::vector<float> x = gpu_test::RandomVector(size_t(rows) * dim, rng_, 2.0f);
      const std::vector<float> delta = gpu_test::RandomVector(size_t(rows) * dim, rng_);
      const std::vector<float> w = gpu_test::RandomVector(dim, rng_);
      DeviceBuffer d_x = gpu_test::UploadFloats(x);
      DeviceBuffer d_delta = gpu_test::UploadFloats(delta);
      DeviceBuffer d_w = gpu_test::UploadFloats(w);
      DeviceBuffer d_out(size_t(rows) * dim * cuda::DtypeSize(dtype()));
      INFERD_ASSERT_CUDA(cuda::LaunchAddRmsNorm(dtype(), d_x.as<float>(), with_delta ? d_delta.as<float>() : nullptr,
                                                d_w.as<float>(), eps, rows, dim, d_out.get(), 0));
      INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
      std::vector<float> want;
      ReferenceAddRmsNorm(&x, with_delta ? &delta : nullptr, w, eps, rows, dim, &want);
      // The residual is updated with the same float additions.
      EXPECT_EQ(Download(Dtype::kFloat32, d_x.get(), x.size()), x);
      EXPECT_LE(RelativeError(Download(dtype(), d_out.get(), want.size()), want), Tolerance(dtype()));
    }
  }
}

TEST_P(KernelTest, GatherFinalNormTakesTheRequestedRows) {
  INFERD_REQUIRE_GPU();
  const int tokens = 40, dim = 512, rows = 7;
  const float eps = 1e-5f;
  std::vector<float> x = gpu_test::RandomVector(size_t(tokens) * dim, rng_);
  const std::vector<float> delta = gpu_test::RandomVector(size_t(tokens) * dim, rng_);
  const std::vector<float> w = gpu_test::RandomVector(dim, rng_);
  std::vector<int> row_tokens = {39, 0, 5, 17, 18, 33, 2};
  DeviceBuffer d_x = gpu_test::UploadFloats(x);
  DeviceBuffer d_delta = gpu_test::UploadFloats(delta);
  DeviceBuffer d_w = gpu_test::UploadFloats(w);
  DeviceBuffer d_rows = gpu_test::UploadInts(row_tokens);
  DeviceBuffer d_out(size_t(rows) * dim * cuda::DtypeSize(dtype()));
  INFERD_ASSERT_CUDA(cuda::LaunchGatherFinalNorm(dtype(), d_x.as<float>(), d_delta.as<float>(), d_rows.as<int>(), rows,
                                                 dim, d_w.as<float>(), eps, d_out.get(), 0));
  INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<float> gathered_x, gathered_delta;
  for (int t : row_tokens) {
    gathered_x.insert(gathered_x.end(), x.begin() + size_t(t) * dim, x.begin() + size_t(t + 1) * dim);
    gathered_delta.insert(gathered_delta.end(), delta.begin() + size_t(t) * dim, delta.begin() + size_t(t + 1) * dim);
  }
  std::vector<float> want;
  ReferenceAddRmsNorm(&gathered_x, &gathered_delta, w, eps, rows, dim, &want);
  EXPECT_LE(RelativeError(Download(dtype(), d_out.get(), want.size()), want), Tolerance(dtype()));
  // The residual stream itself is left alone.
  EXPECT_EQ(Download(Dtype::kFloat32, d_x.get(), x.size()), x);
}

// The CPU backend's tables: cos/sin of pos * theta^(-2i/d).
void RopeTables(int max_pos, int head_dim, float theta, std::vector<float>* cos_t, std::vector<float>* sin_t) {
  const int half = head_dim / 2;
  cos_t->resize(size_t(max_pos) * half);
  sin_t->resize(cos_t->size());
  for (int pos = 0; pos < max_pos; ++pos) {
    for (int i = 0; i < half; ++i) {
      const float freq = 1.0f / powf(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
      (*cos_t)[size_t(pos) * half + i] = cosf(static_cast<float>(pos) * freq);
      (*sin_t)[size_t(pos) * half + i] = sinf(static_cast<float>(pos) * freq);
    }
  }
}

TEST_P(KernelTest, RopeRotatesQueriesAndKeysOnly) {
  INFERD_REQUIRE_GPU();
  for (const cuda::RopeStyle style : {cuda::RopeStyle::kAdjacentPairs, cuda::RopeStyle::kHalfRotation}) {
    for (const int head_dim : {8, 64, 128}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim
                                        << (style == cuda::RopeStyle::kHalfRotation ? " half" : " adjacent"));
      const int tokens = 23, n_heads = 6, n_kv = 2, max_pos = 4096;
      const int stride = (n_heads + 2 * n_kv) * head_dim;
      std::vector<float> qkv = RoundAll(dtype(), gpu_test::RandomVector(size_t(tokens) * stride, rng_));
      std::vector<int> positions(tokens);
      std::uniform_int_distribution<int> pick(0, max_pos - 1);
      for (int& p : positions) p = pick(rng_);
      std::vector<float> cos_t, sin_t;
      RopeTables(max_pos, head_dim, 500000.0f, &cos_t, &sin_t);
      DeviceBuffer d_qkv = Upload(dtype(), qkv);
      DeviceBuffer d_pos = gpu_test::UploadInts(positions);
      DeviceBuffer d_cos = gpu_test::UploadFloats(cos_t);
      DeviceBuffer d_sin = gpu_test::UploadFloats(sin_t);
      INFERD_ASSERT_CUDA(cuda::LaunchRope(dtype(), d_qkv.get(), stride, d_pos.as<int>(), tokens, n_heads, n_kv,
                                          head_dim, d_cos.as<float>(), d_sin.as<float>(), style, 0));
      INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
      std::vector<float> want = qkv;
      const int half = head_dim / 2;
      for (int t = 0; t < tokens; ++t) {
        for (int h = 0; h < n_heads + n_kv; ++h) {
          float* v = &want[size_t(t) * stride + size_t(h) * head_dim];
          for (int i = 0; i < half; ++i) {
            const float c = cos_t[size_t(positions[t]) * half + i], s = sin_t[size_t(positions[t]) * half + i];
            const int i0 = style == cuda::RopeStyle::kHalfRotation ? i : 2 * i;
            const int i1 = style == cuda::RopeStyle::kHalfRotation ? i + half : 2 * i + 1;
            const double v0 = v[i0], v1 = v[i1];
            v[i0] = static_cast<float>(v0 * c - v1 * s);
            v[i1] = static_cast<float>(v0 * s + v1 * c);
          }
        }
      }
      const std::vector<float> got = Download(dtype(), d_qkv.get(), qkv.size());
      EXPECT_LE(RelativeError(got, want), Tolerance(dtype()));
      // Values pass through untouched.
      for (int t = 0; t < tokens; ++t) {
        for (int i = (n_heads + n_kv) * head_dim; i < stride; ++i) {
          ASSERT_EQ(got[size_t(t) * stride + i], qkv[size_t(t) * stride + i]);
        }
      }
    }
  }
}

TEST_P(KernelTest, KvAppendWritesOnlyTheGivenSlots) {
  INFERD_REQUIRE_GPU();
  const int tokens = 29, dim = 256, kv_dim = 128, num_slots = 16 * 12;
  const int stride = dim + 2 * kv_dim;
  const std::vector<float> qkv = RoundAll(dtype(), gpu_test::RandomVector(size_t(tokens) * stride, rng_));
  std::vector<int> slots(num_slots);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng_);
  slots.resize(tokens);
  DeviceBuffer d_qkv = Upload(dtype(), qkv);
  DeviceBuffer d_slots = gpu_test::UploadInts(slots);
  const size_t pool_elements = size_t(num_slots) * kv_dim;
  DeviceBuffer d_k(pool_elements * cuda::DtypeSize(dtype()));
  DeviceBuffer d_v(pool_elements * cuda::DtypeSize(dtype()));
  INFERD_ASSERT_CUDA(cuda::LaunchKvAppend(dtype(), d_qkv.get(), stride, dim, dim + kv_dim, d_slots.as<int>(), tokens,
                                          kv_dim, d_k.get(), d_v.get(), 0));
  INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> k = Download(dtype(), d_k.get(), pool_elements);
  const std::vector<float> v = Download(dtype(), d_v.get(), pool_elements);
  std::vector<bool> written(num_slots, false);
  for (int t = 0; t < tokens; ++t) {
    written[slots[t]] = true;
    for (int i = 0; i < kv_dim; ++i) {
      ASSERT_EQ(k[size_t(slots[t]) * kv_dim + i], qkv[size_t(t) * stride + dim + i]);
      ASSERT_EQ(v[size_t(slots[t]) * kv_dim + i], qkv[size_t(t) * stride + dim + kv_dim + i]);
    }
  }
  for (int s = 0; s < num_slots; ++s) {
    if (written[s]) continue;
    for (int i = 0; i < kv_dim; ++i) {
      ASSERT_TRUE(std::isnan(k[size_t(s) * kv_dim + i]) && std::isnan(v[size_t(s) * kv_dim + i])) << "slot " << s;
    }
  }
}

TEST_P(KernelTest, SiluAndMulMatchesReference) {
  INFERD_REQUIRE_GPU();
  for (const int hidden : {172, 14336}) {
    const int tokens = 9;
    const std::vector<float> gate_up = RoundAll(dtype(), gpu_test::RandomVector(size_t(tokens) * 2 * hidden, rng_, 3.0f));
    DeviceBuffer d_in = Upload(dtype(), gate_up);
    DeviceBuffer d_out(size_t(tokens) * hidden * cuda::DtypeSize(dtype()));
    INFERD_ASSERT_CUDA(cuda::LaunchSiluAndMul(dtype(), d_in.get(), tokens, hidden, d_out.get(), 0));
    INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<float> want(size_t(tokens) * hidden);
    for (int t = 0; t < tokens; ++t) {
      for (int i = 0; i < hidden; ++i) {
        const double g = gate_up[size_t(t) * 2 * hidden + i], u = gate_up[size_t(t) * 2 * hidden + hidden + i];
        want[size_t(t) * hidden + i] = static_cast<float>(g / (1.0 + std::exp(-g)) * u);
      }
    }
    EXPECT_LE(RelativeError(Download(dtype(), d_out.get(), want.size()), want), Tolerance(dtype())) << hidden;
  }
}

TEST_P(KernelTest, ConvertRoundsToNearest) {
  INFERD_REQUIRE_GPU();
  const std::vector<float> values = gpu_test::RandomVector(100003, rng_, 10.0f);
  DeviceBuffer d_in = gpu_test::UploadFloats(values);
  DeviceBuffer d_out(values.size() * cuda::DtypeSize(dtype()));
  INFERD_ASSERT_CUDA(
      cuda::LaunchConvertFromFloat(dtype(), d_in.as<float>(), static_cast<int64_t>(values.size()), d_out.get(), 0));
  INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(Download(dtype(), d_out.get(), values.size()), RoundAll(dtype(), values));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, KernelTest, ::testing::ValuesIn(gpu_test::AllDtypes()), gpu_test::DtypeParamName);

}  // namespace
}  // namespace inferd

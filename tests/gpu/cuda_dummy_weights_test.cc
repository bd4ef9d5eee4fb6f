// Dummy weights generated on the device equal engine/dummy_weights.cc's bit
// for bit (before dtype conversion). The host-side half (layout and tables)
// runs without a GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "cuda/device_weights.h"
#include "cuda/dummy_generator.h"
#include "engine/model/dummy_weights.h"
#include "tests/gpu/gpu_test_util.h"

namespace inferd {
namespace {

using cuda::Dtype;

ModelConfig TinyConfig() {
  absl::StatusOr<ModelConfig> c = DummyPresetConfig("tiny");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// GQA, a separate classifier, an odd vocabulary and hidden size.
ModelConfig UnsharedConfig() {
  ModelConfig c;
  c.name = "dummy:test";
  c.dim = 64;
  c.hidden_dim = 96;
  c.n_layers = 3;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.vocab_size = 51;
  c.max_seq_len = 32;
  c.shared_classifier = false;
  return c;
}

TEST(DummyWeightsLayout, HostLayoutMatchesModelWeightsAllocate) {
  for (const ModelConfig& c : {TinyConfig(), UnsharedConfig()}) {
    std::unique_ptr<ModelWeights> w = ModelWeights::AllocateF32(c);
    const cuda::HostWeightLayout layout = cuda::HostWeightLayout::For(c);
    const float* base = w->f32_storage();
    EXPECT_EQ(layout.total, static_cast<int64_t>(w->f32_storage_size()));
    EXPECT_EQ(layout.token_embedding, w->token_embedding.f32() - base);
    EXPECT_EQ(layout.rms_final, w->rms_final.f32() - base);
    EXPECT_EQ(layout.wcls, w->wcls.f32() - base);
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& lw = w->layers[l];
      const int64_t d = c.dim, kv = c.kv_dim(), h = c.hidden_dim;
      EXPECT_EQ(layout.rms_att + l * d, lw.rms_att.f32() - base);
      EXPECT_EQ(layout.wq + l * d * d, lw.wq.f32() - base);
      EXPECT_EQ(layout.wk + l * kv * d, lw.wk.f32() - base);
      EXPECT_EQ(layout.wv + l * kv * d, lw.wv.f32() - base);
      EXPECT_EQ(layout.wo + l * d * d, lw.wo.f32() - base);
      EXPECT_EQ(layout.rms_ffn + l * d, lw.rms_ffn.f32() - base);
      EXPECT_EQ(layout.w1 + l * h * d, lw.w1.f32() - base);
      EXPECT_EQ(layout.w2 + l * d * h, lw.w2.f32() - base);
      EXPECT_EQ(layout.w3 + l * h * d, lw.w3.f32() - base);
    }
  }
}

bool IsNormElement(const ModelConfig& c, const cuda::HostWeightLayout& layout, int64_t i) {
  const int64_t norms = int64_t{c.n_layers} * c.dim;
  return (i >= layout.rms_att && i < layout.rms_att + norms) || (i >= layout.rms_ffn && i < layout.rms_ffn + norms) ||
         (i >= layout.rms_final && i < layout.rms_final + c.dim);
}

TEST(DummyWeightsLayout, TabulatedGeneratorReproducesTheCpuBitForBit) {
  std::vector<float> tables(static_cast<size_t>(3 * cuda::kDummyTableSize));
  float* radius = tables.data();
  float* cosine = radius + cuda::kDummyTableSize;
  float* sine = cosine + cuda::kDummyTableSize;
  cuda::BuildDummyTables(radius, cosine, sine);
  for (const ModelConfig& c : {TinyConfig(), UnsharedConfig()}) {
    for (const uint64_t seed : {uint64_t{0}, uint64_t{1234}}) {
      absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(c, seed);
      ASSERT_TRUE(w.ok()) << w.status();
      const cuda::HostWeightLayout layout = cuda::HostWeightLayout::For(c);
      const uint64_t key = cuda::DummyKey(seed);
      int64_t mismatches = 0;
      for (int64_t i = 0; i < layout.total; ++i) {
        const float want = (*w)->f32_storage()[i];
        const float got = IsNormElement(c, layout, i) ? 1.0f : cuda::DummyValue(key, i, radius, cosine, sine);
        if (std::memcmp(&want, &got, sizeof(float)) != 0) ++mismatches;
      }
      EXPECT_EQ(mismatches, 0) << c.name << " seed " << seed;
    }
  }
}

// Bytes of `count` elements at `ptr`.
std::vector<uint8_t> DeviceBytes(const void* ptr, size_t bytes) {
  std::vector<uint8_t> out(bytes);
  cudaMemcpy(out.data(), ptr, bytes, cudaMemcpyDeviceToHost);
  return out;
}

TEST(DeviceDummyWeights, GeneratedEqualsUploadedCpuWeights) {
  INFERD_REQUIRE_GPU();
  cudaStream_t stream = nullptr;
  INFERD_ASSERT_CUDA(cudaStreamCreate(&stream));
  for (const ModelConfig& c : {TinyConfig(), UnsharedConfig()}) {
    const uint64_t seed = 42;
    absl::StatusOr<std::unique_ptr<ModelWeights>> host = MakeDummyWeights(c, seed);
    ASSERT_TRUE(host.ok()) << host.status();
    for (const Dtype dtype : gpu_test::AllDtypes()) {
      SCOPED_TRACE(::testing::Message() << c.name << " " << cuda::DtypeName(dtype));
      auto generated = cuda::DeviceWeights::GenerateDummy(c, seed, dtype, stream);
      ASSERT_TRUE(generated.ok()) << generated.status();
      auto uploaded = cuda::DeviceWeights::Upload(**host, dtype, stream);
      ASSERT_TRUE(uploaded.ok()) << uploaded.status();
      const cuda::DeviceWeights& g = **generated;
      const cuda::DeviceWeights& u = **uploaded;
      const size_t es = cuda::DtypeSize(dtype);
      const size_t d = c.dim, kv = c.kv_dim(), h = c.hidden_dim, v = c.vocab_size;
      auto same = [&](const void* a, const void* b, size_t bytes, const char* what) {
        EXPECT_EQ(DeviceBytes(a, bytes), DeviceBytes(b, bytes)) << what;
      };
      same(g.token_embedding(), u.token_embedding(), v * d * es, "token embedding");
      same(g.wcls(), u.wcls(), v * d * es, "classifier");
      same(g.rms_final(), u.rms_final(), d * 4, "final norm");
      for (int l = 0; l < c.n_layers; ++l) {
        const cuda::DeviceLayerWeights& gl = g.layer(l);
        const cuda::DeviceLayerWeights& ul = u.layer(l);
        same(gl.rms_att, ul.rms_att, d * 4, "attention norm");
        same(gl.wqkv, ul.wqkv, (d + 2 * kv) * d * es, "wqkv");
        same(gl.wo, ul.wo, d * d * es, "wo");
        same(gl.rms_ffn, ul.rms_ffn, d * 4, "ffn norm");
        same(gl.w13, ul.w13, 2 * h * d * es, "w13");
        same(gl.w2, ul.w2, d * h * es, "w2");
      }
      if (dtype == Dtype::kFloat32) {
        // fp32: the stacked matrices hold the CPU tensors themselves.
        const LayerWeights& hl = (*host)->layers[c.n_layers - 1];
        std::vector<float> want(hl.wq.f32(), hl.wq.f32() + d * d);
        want.insert(want.end(), hl.wk.f32(), hl.wk.f32() + kv * d);
        want.insert(want.end(), hl.wv.f32(), hl.wv.f32() + kv * d);
        EXPECT_EQ(gpu_test::Download(dtype, g.layer(c.n_layers - 1).wqkv, want.size()), want);
      }
    }
  }
  cudaStreamDestroy(stream);
}

TEST(DeviceDummyWeights, BackendLogitsEqualUploadedWeights) {
  INFERD_REQUIRE_GPU();
  const ModelConfig c = TinyConfig();
  CudaBackendOptions options;
  options.dtype = "float32";
  options.kv.num_blocks = 8;
  options.max_num_batched_tokens = 64;
  options.max_num_seqs = 4;
  absl::StatusOr<std::unique_ptr<ModelWeights>> host = MakeDummyWeights(c, 7);
  ASSERT_TRUE(host.ok()) << host.status();
  auto uploaded = CreateCudaBackend(std::shared_ptr<const ModelWeights>(*std::move(host)), options);
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  auto generated = CreateCudaBackendWithDummyWeights(c, 7, options);
  ASSERT_TRUE(generated.ok()) << generated.status();
  StepBatch batch;
  const std::vector<int> prompt = {1, 5, 99, 300, 7, 42, 511, 0, 3};
  const std::vector<int> table = {3, 1};
  batch.AddSequence(prompt, static_cast<int>(prompt.size()), table, true);
  std::vector<float> a(c.vocab_size), b(c.vocab_size);
  ASSERT_TRUE((*uploaded)->Forward(batch, absl::MakeSpan(a)).ok());
  ASSERT_TRUE((*generated)->Forward(batch, absl::MakeSpan(b)).ok());
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace inferd

// Model files in, weights out: llama2.c fp32 and int8 (ak42 v2) checkpoints
// of the bundled stories260K, corrupt variants of them (each must be refused
// with a message naming the file and the problem, before any allocation),
// generated dummy weights, and LoadModel's resolution of --model arguments.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/model/dummy_weights.h"
#include "engine/model/llama2c_checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/model/model_loader.h"
#include "engine/model/model_weights.h"

namespace inferd {
namespace {

std::vector<float> F32Storage(const ModelWeights& w) {
  return {w.f32_storage(), w.f32_storage() + w.f32_storage_size()};
}

// gmock is not linked: a plain substring check with a readable failure.
::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

const std::string kModelDir = std::string(INFERD_SOURCE_DIR) + "/models/stories260K";
const std::string kFp32Path = kModelDir + "/stories260K.bin";
const std::string kInt8Path = kModelDir + "/stories260K_q80.bin";
const std::string kLlama2Tokenizer =
    std::string(INFERD_SOURCE_DIR) + "/models/llama2-tokenizer/tokenizer.bin";

std::vector<char> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

std::string WriteTemp(const std::string& name, const std::vector<char>& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

void PutInt32(std::vector<char>& bytes, size_t offset, int32_t value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

void ExpectStories260KShape(const ModelConfig& c) {
  EXPECT_EQ(c.name, "stories260K");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(c.head_dim(), 8);
  EXPECT_EQ(c.kv_dim(), 32);
}

TEST(Llama2cCheckpointTest, Fp32Stories260K) {
  auto w = LoadLlama2cModel(kFp32Path);
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectStories260KShape((*w)->config);
  EXPECT_EQ((*w)->f32_storage_size(), static_cast<size_t>((*w)->config.NumParameters()));
  EXPECT_EQ((*w)->wcls.data, (*w)->token_embedding.data);
  ASSERT_EQ((*w)->layers.size(), 5u);
  // The first weight of the file is the first float after the header, and
  // rms_final is the last array before the RoPE tables.
  const std::vector<char> bytes = ReadBytes(kFp32Path);
  float first, last_norm;
  std::memcpy(&first, bytes.data() + 28, 4);
  std::memcpy(&last_norm, bytes.data() + 28 + 4 * ((*w)->f32_storage_size() - 1), 4);
  EXPECT_EQ((*w)->token_embedding.f32()[0], first);
  EXPECT_EQ((*w)->rms_final.f32()[63], last_norm);
  EXPECT_EQ((*w)->layers[1].wq.f32(), (*w)->layers[0].wq.f32() + 64 * 64);
  EXPECT_EQ((*w)->layers[4].w3.f32() + 172 * 64, (*w)->rms_final.f32());
}

TEST(Llama2cCheckpointTest, Int8DequantizesToTheFp32WeightsExactly) {
  auto fp32 = LoadLlama2cFp32(kFp32Path);
  auto int8 = LoadLlama2cModel(kInt8Path);
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  ASSERT_TRUE(int8.ok()) << int8.status();
  ExpectStories260KShape((*int8)->config);
  const std::vector<float> a = F32Storage(**fp32);
  const std::vector<float> b = F32Storage(**int8);
  ASSERT_EQ(a.size(), b.size());
  size_t mismatches = 0, first_mismatch = a.size();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      if (mismatches++ == 0) first_mismatch = i;
    }
  }
  EXPECT_EQ(mismatches, 0u) << "first at element " << first_mismatch;
}

TEST(Llama2cCheckpointTest, UnsharedClassifierIsRead) {
  std::vector<char> bytes = ReadBytes(kFp32Path);
  PutInt32(bytes, 20, -512);  // negative vocab_size: separate classifier
  // wcls = 2 * embedding (exact in fp32), appended after the RoPE tables.
  for (int i = 0; i < 512 * 64; ++i) {
    float x;
    std::memcpy(&x, bytes.data() + 28 + 4 * i, 4);
    x *= 2.0f;
    const char* p = reinterpret_cast<const char*>(&x);
    bytes.insert(bytes.end(), p, p + 4);
  }
  const std::string path = WriteTemp("unshared.bin", bytes);
  auto w = LoadLlama2cModel(path);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE((*w)->config.shared_classifier);
  EXPECT_EQ((*w)->config.vocab_size, 512);
  ASSERT_NE((*w)->wcls.data, (*w)->token_embedding.data);
  for (int i = 0; i < 512 * 64; ++i) {
    ASSERT_EQ((*w)->wcls.f32()[i], 2.0f * (*w)->token_embedding.f32()[i]) << i;
  }
  // Same weights otherwise.
  auto shared = LoadLlama2cModel(kFp32Path);
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(std::memcmp((*w)->f32_storage(), (*shared)->f32_storage(),
                        4 * (*shared)->f32_storage_size()),
            0);
}

// `status` is an error naming `path` and containing `problem`.
void ExpectRejected(const absl::Status& status, const std::string& path,
                    const std::string& problem) {
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(Contains(std::string(status.message()), path));
  EXPECT_TRUE(Contains(std::string(status.message()), problem));
}

TEST(Llama2cCheckpointTest, MissingFile) {
  const std::string path = ::testing::TempDir() + "/no-such-model.bin";
  auto w = LoadLlama2cModel(path);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  ExpectRejected(w.status(), path, "not found");
}

TEST(Llama2cCheckpointTest, TruncatedFilesAreRefused) {
  for (const std::string& source : {kFp32Path, kInt8Path}) {
    const std::vector<char> bytes = ReadBytes(source);
    for (size_t cut : {size_t{0}, size_t{3}, size_t{20}, size_t{28}, size_t{100}, size_t{255},
                       size_t{256}, bytes.size() / 2, bytes.size() - 1}) {
      SCOPED_TRACE(source + " cut at " + std::to_string(cut));
      const std::string path = WriteTemp("truncated.bin", {bytes.begin(), bytes.begin() + cut});
      auto w = LoadLlama2cModel(path);
      ExpectRejected(w.status(), path, "truncated");
    }
  }
}

TEST(Llama2cCheckpointTest, TrailingBytesAreRefused) {
  for (const std::string& source : {kFp32Path, kInt8Path}) {
    std::vector<char> bytes = ReadBytes(source);
    bytes.resize(bytes.size() + 4);
    const std::string path = WriteTemp("trailing.bin", bytes);
    ExpectRejected(LoadLlama2cModel(path).status(), path, "trailing bytes");
  }
}

TEST(Llama2cCheckpointTest, WrongMagicOrVersion) {
  std::vector<char> bytes = ReadBytes(kInt8Path);
  PutInt32(bytes, 4, 3);
  std::string path = WriteTemp("version3.bin", bytes);
  ExpectRejected(LoadLlama2cModel(path).status(), path, "version 3");
  // An fp32 file given to the int8 reader.
  ExpectRejected(LoadLlama2cInt8(kFp32Path).status(), kFp32Path, "magic");
  // A damaged magic makes it an (absurd) fp32 header.
  bytes = ReadBytes(kInt8Path);
  bytes[0] ^= 1;
  path = WriteTemp("badmagic.bin", bytes);
  EXPECT_FALSE(LoadLlama2cModel(path).ok());
}

TEST(Llama2cCheckpointTest, AbsurdHeadersAreRefusedBeforeAllocating) {
  struct Case {
    size_t offset;  // of the int32 in the fp32 header
    int32_t value;
    std::string problem;
  };
  const Case cases[] = {
      {0, 1 << 30, "dim (1073741824)"},
      {0, 0, "dim (0)"},
      {4, -5, "hidden_dim (-5)"},
      {8, -1, "n_layers (-1)"},
      {12, 7, "n_heads (7) does not divide dim (64)"},
      {16, 3, "n_kv_heads (3) does not divide n_heads (8)"},
      {12, 64, "head_dim (1"},  // 64 heads of width 1: odd
      {20, 1 << 30, "vocab_size"},
      {20, INT32_MIN, "vocab_size"},
      {24, 0x7fffffff, "max_seq_len"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.problem);
    std::vector<char> bytes = ReadBytes(kFp32Path);
    PutInt32(bytes, c.offset, c.value);
    const std::string path = WriteTemp("absurd.bin", bytes);
    ExpectRejected(LoadLlama2cModel(path).status(), path, c.problem);
  }
  // All caps pass individually, but the parameter count is absurd.
  std::vector<char> bytes = ReadBytes(kFp32Path);
  PutInt32(bytes, 0, 65536);
  PutInt32(bytes, 4, 262144);
  PutInt32(bytes, 8, 1024);
  const std::string path = WriteTemp("huge.bin", bytes);
  ExpectRejected(LoadLlama2cModel(path).status(), path, "parameters");
}

TEST(Llama2cCheckpointTest, BadGroupSizeIsRefused) {
  for (int32_t group_size : {0, -32, 7}) {
    std::vector<char> bytes = ReadBytes(kInt8Path);
    std::memcpy(bytes.data() + 37, &group_size, 4);
    const std::string path = WriteTemp("groupsize.bin", bytes);
    ExpectRejected(LoadLlama2cModel(path).status(), path, "group_size");
  }
}

TEST(DummyWeightsTest, PresetShapes) {
  auto tiny = DummyPresetConfig("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->name, "dummy:tiny");
  EXPECT_EQ(tiny->dim, 64);
  EXPECT_EQ(tiny->hidden_dim, 172);
  EXPECT_EQ(tiny->n_layers, 2);
  EXPECT_EQ(tiny->n_kv_heads, 4);
  EXPECT_TRUE(tiny->shared_classifier);
  auto m110 = DummyPresetConfig("llama-110m");
  ASSERT_TRUE(m110.ok());
  EXPECT_EQ(m110->dim, 768);
  EXPECT_EQ(m110->n_layers, 12);
  EXPECT_EQ(m110->vocab_size, 32000);
  EXPECT_EQ(m110->max_seq_len, 1024);
  EXPECT_FALSE(m110->shared_classifier);
  auto l3 = DummyPresetConfig("llama3-8b");
  ASSERT_TRUE(l3.ok());
  EXPECT_EQ(l3->rope_theta, 500000.0f);
  EXPECT_EQ(l3->NumParameters(), 8030261248);  // Llama 3 8B's published count
  for (const std::string& name : DummyPresetNames()) {
    auto c = DummyPresetConfig(name);
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_TRUE(c->Validate(name).ok()) << name;
  }
}

TEST(DummyWeightsTest, UnknownPresetListsKnownOnes) {
  auto c = DummyPresetConfig("llama-9000");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(c.status().message()), "llama-9000"));
  for (const std::string& name : DummyPresetNames()) {
    EXPECT_TRUE(Contains(std::string(c.status().message()), name));
  }
}

TEST(DummyWeightsTest, SeededAndIndependentOfThreadCount) {
  auto config = DummyPresetConfig("tiny");
  ASSERT_TRUE(config.ok());
  auto a = MakeDummyWeights(*config, 7);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = MakeDummyWeights(*config, 7, /*num_threads=*/1);
  auto c = MakeDummyWeights(*config, 7, /*num_threads=*/3);
  auto d = MakeDummyWeights(*config, 8);
  ASSERT_TRUE(b.ok() && c.ok() && d.ok());
  EXPECT_EQ(F32Storage(**a), F32Storage(**b));
  EXPECT_EQ(F32Storage(**a), F32Storage(**c));
  EXPECT_NE(F32Storage(**a), F32Storage(**d));
  EXPECT_EQ((*a)->wcls.data, (*a)->token_embedding.data);
}

TEST(DummyWeightsTest, Llama110mShapeAndDistribution) {
  auto config = DummyPresetConfig("llama-110m");
  ASSERT_TRUE(config.ok());
  auto a = MakeDummyWeights(*config, 0);
  ASSERT_TRUE(a.ok()) << a.status();
  const auto& w = **a;
  EXPECT_EQ(w.config.name, "dummy:llama-110m");
  EXPECT_EQ(w.f32_storage_size(), static_cast<size_t>(config->NumParameters()));
  ASSERT_EQ(w.layers.size(), 12u);
  EXPECT_NE(w.wcls.data, w.token_embedding.data);
  EXPECT_EQ(w.wcls.f32() + int64_t{32000} * 768, w.f32_storage() + w.f32_storage_size());

  // Token embedding: 24.6M samples of N(0, 0.02).
  const int64_t n = int64_t{config->vocab_size} * config->dim;
  double sum = 0, sum_sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum += w.token_embedding.f32()[i];
    sum_sq += double{w.token_embedding.f32()[i]} * w.token_embedding.f32()[i];
  }
  const double mean = sum / n;
  const double stddev = std::sqrt(sum_sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(stddev, 0.02, 2e-4);

  for (const LayerWeights& layer : w.layers) {
    for (int i = 0; i < config->dim; ++i) {
      ASSERT_EQ(layer.rms_att.f32()[i], 1.0f);
      ASSERT_EQ(layer.rms_ffn.f32()[i], 1.0f);
    }
    EXPECT_NE(layer.wq.f32()[0], 1.0f);
  }
  for (int i = 0; i < config->dim; ++i) ASSERT_EQ(w.rms_final.f32()[i], 1.0f);
}

TEST(DummyWeightsTest, TooLargeForMemoryIsRefused) {
  const double memory = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  if (memory >= 40e9) GTEST_SKIP() << "machine has " << memory / 1e9 << " GB";
  auto config = DummyPresetConfig("llama3-8b");
  ASSERT_TRUE(config.ok());
  auto w = MakeDummyWeights(*config, 0);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(std::string(w.status().message()), "32.1 GB"));
}

TEST(ModelLoaderTest, LoadsDirectoryPreferringFp32) {
  auto m = LoadModel(kModelDir);
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectStories260KShape(m->weights->config);
  EXPECT_EQ(m->tokenizer->vocab_size(), 512);
  auto fp32 = LoadLlama2cFp32(kFp32Path);
  ASSERT_TRUE(fp32.ok());
  EXPECT_EQ(F32Storage(*m->weights), F32Storage(**fp32));
}

TEST(ModelLoaderTest, LoadsFile) {
  for (const std::string& path : {kFp32Path, kInt8Path}) {
    auto m = LoadModel(path);
    ASSERT_TRUE(m.ok()) << m.status();
    ExpectStories260KShape(m->weights->config);
    EXPECT_EQ(m->tokenizer->vocab_size(), 512);
  }
}

TEST(ModelLoaderTest, LoadsDummyTiny) {
  auto m = LoadModel("dummy:tiny");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->weights->config.name, "dummy:tiny");
  EXPECT_EQ(m->weights->config.vocab_size, 512);
  EXPECT_EQ(m->tokenizer->vocab_size(), 512);
  auto unknown = LoadModel("dummy:nope");
  EXPECT_TRUE(Contains(std::string(unknown.status().message()), "tiny"));
}

TEST(ModelLoaderTest, MismatchedTokenizerIsRefused) {
  auto m = LoadModel(kModelDir, kLlama2Tokenizer);
  EXPECT_FALSE(m.ok());
  EXPECT_TRUE(Contains(std::string(m.status().message()), kLlama2Tokenizer));
  EXPECT_TRUE(Contains(std::string(m.status().message()), "512"));
}

TEST(ModelLoaderTest, ModelsDirFollowsEnvironment) {
  const char* saved = std::getenv("INFERD_MODELS_DIR");
  const std::string saved_value = saved ? saved : "";
  unsetenv("INFERD_MODELS_DIR");
  EXPECT_EQ(ModelsDir(), std::string(INFERD_SOURCE_DIR) + "/models");
  setenv("INFERD_MODELS_DIR", "", 1);
  EXPECT_EQ(ModelsDir(), std::string(INFERD_SOURCE_DIR) + "/models");
  setenv("INFERD_MODELS_DIR", "/elsewhere", 1);
  EXPECT_EQ(ModelsDir(), "/elsewhere");
  if (saved) {
    setenv("INFERD_MODELS_DIR", saved_value.c_str(), 1);
  } else {
    unsetenv("INFERD_MODELS_DIR");
  }
}

TEST(ModelLoaderTest, NotFound) {
  const std::string missing = ::testing::TempDir() + "/no-such-model-dir";
  auto m = LoadModel(missing);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(m.status().message()), missing));
  // A directory without a model or without a tokenizer.
  const std::string empty = ::testing::TempDir() + "/empty-model-dir";
  std::filesystem::create_directories(empty);
  m = LoadModel(empty);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(m.status().message()), empty));
  const std::string lone = ::testing::TempDir() + "/lone-model-dir";
  std::filesystem::create_directories(lone);
  std::filesystem::copy_file(kFp32Path, lone + "/model.bin",
                             std::filesystem::copy_options::overwrite_existing);
  m = LoadModel(lone);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(m.status().message()), "tokenizer"));
}

}  // namespace
}  // namespace inferd

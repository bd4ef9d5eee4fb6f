// The safetensors and GGUF readers on small files written here byte by
// byte: what they accept, and each way a file can be broken.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/gguf_file.h"
#include "engine/model/gguf_model.h"
#include "engine/model/safetensors_file.h"

namespace inferd {
namespace {

std::string Write(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

template <typename T>
std::string Le(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

std::string Safetensors(const nlohmann::json& header, const std::string& data) {
  const std::string text = header.dump();
  return Le<uint64_t>(text.size()) + text + data;
}

std::string StatusText(const absl::Status& s) { return std::string(s.message()); }

TEST(SafetensorsFileTest, ReadsTensorsInPlace) {
  const std::string data = Le(1.0f) + Le(2.0f) + Le(uint16_t{0x3f80});
  const std::string path = Write("ok.safetensors", Safetensors({{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
                                                                {"b", {{"dtype", "BF16"}, {"shape", {1, 1}}, {"data_offsets", {8, 10}}}},
                                                                {"__metadata__", {{"format", "pt"}}}},
                                                               data));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors().size(), 2u);
  const SafetensorsTensor& a = f->tensors().at("a");
  EXPECT_EQ(a.dtype, "F32");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(a.bytes, 8u);
  EXPECT_EQ(a.data, f->mapping()->data() + f->mapping()->size() - 10);  // mapped, not copied
  EXPECT_EQ(f->tensors().at("b").shape, (std::vector<int64_t>{1, 1}));
}

TEST(SafetensorsFileTest, BrokenFilesNameTheFileAndTensor) {
  const std::string four(4, '\0');
  struct Case {
    std::string name, bytes, expected;
  };
  const std::vector<Case> cases = {
      {"short", "abc", "only 3 bytes (truncated)"},
      {"long-header", Le<uint64_t>(1000) + "{}", "header of 1000 bytes does not fit"},
      {"not-json", Le<uint64_t>(3) + "{x}", "the header is not a JSON object"},
      {"no-offsets", Safetensors({{"t", {{"dtype", "F32"}, {"shape", {1}}}}}, four),
       "tensor t: header entry needs dtype, shape and data_offsets"},
      {"unknown-dtype", Safetensors({{"t", {{"dtype", "Q9"}, {"shape", {1}}, {"data_offsets", {0, 4}}}}}, four),
       "tensor t: unknown dtype Q9"},
      {"outside", Safetensors({{"t", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}}, four),
       "tensor t: bytes [0, 8) lie outside the data section of 4 bytes"},
      {"wrong-count", Safetensors({{"t", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 4}}}}}, four),
       "tensor t: holds 4 bytes but its shape and dtype need 8"},
      {"negative-dim", Safetensors({{"t", {{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 4}}}}}, four),
       "tensor t: shape must be non-negative integers"},
      {"overlap",
       Safetensors({{"s", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
                    {"t", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {4, 8}}}}},
                   std::string(8, '\0')),
       "tensors overlap at byte 4"},
  };
  for (const Case& c : cases) {
    const std::string path = Write(c.name + ".safetensors", c.bytes);
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok()) << c.name;
    EXPECT_EQ(StatusText(f.status()).rfind(path + ": ", 0), 0u) << f.status();
    EXPECT_NE(StatusText(f.status()).find(c.expected), std::string::npos) << c.name << ": " << f.status();
  }
  EXPECT_EQ(SafetensorsFile::Open(Write("empty.safetensors", "")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetensorsFile::Open(::testing::TempDir() + "/absent.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

// A GGUF v3 file built key by key.
class GgufWriter {
 public:
  void String(const std::string& key, const std::string& v) { Key(key, 8); kv_ += Str(v); }
  void U32(const std::string& key, uint32_t v) { Key(key, 4); kv_ += Le(v); }
  void Bool(const std::string& key, bool v) { Key(key, 7); kv_ += Le<uint8_t>(v); }
  void Strings(const std::string& key, const std::vector<std::string>& v) {
    Key(key, 9);
    kv_ += Le<uint32_t>(8) + Le<uint64_t>(v.size());
    for (const std::string& s : v) kv_ += Str(s);
  }
  void I32s(const std::string& key, const std::vector<int32_t>& v) {
    Key(key, 9);
    kv_ += Le<uint32_t>(5) + Le<uint64_t>(v.size());
    for (int32_t x : v) kv_ += Le(x);
  }
  void Tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, const std::string& data) {
    infos_ += Str(name) + Le<uint32_t>(dims.size());
    for (uint64_t d : dims) infos_ += Le(d);
    infos_ += Le(type) + Le<uint64_t>(data_.size());
    data_ += data + std::string((32 - data.size() % 32) % 32, '\0');
    ++tensors_;
  }
  std::string Bytes(uint32_t version = 3) const {
    std::string out = "GGUF" + Le(version) + Le<uint64_t>(tensors_) + Le<uint64_t>(keys_) + kv_ + infos_;
    out += std::string((32 - out.size() % 32) % 32, '\0');
    return out + data_;
  }

 private:
  static std::string Str(const std::string& s) { return Le<uint64_t>(s.size()) + s; }
  void Key(const std::string& key, uint32_t type) {
    kv_ += Str(key) + Le(type);
    ++keys_;
  }
  std::string kv_, infos_, data_;
  uint64_t keys_ = 0, tensors_ = 0;
};

TEST(GgufFileTest, ReadsKeysArraysAndTensors) {
  GgufWriter w;
  w.String("general.architecture", "llama");
  w.Strings("tokenizer.ggml.tokens", {"a", "b"});
  w.I32s("tokenizer.ggml.token_type", {1, 3});
  w.Bool("tokenizer.ggml.add_bos_token", false);
  w.Tensor("t", {2, 1}, kGgmlF32, Le(1.5f) + Le(2.5f));
  absl::StatusOr<GgufFile> f = GgufFile::Open(Write("ok.gguf", w.Bytes()));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata().at("general.architecture"), "llama");
  EXPECT_EQ(f->metadata().at("tokenizer.ggml.tokens"), nlohmann::json({"a", "b"}));
  EXPECT_EQ(f->metadata().at("tokenizer.ggml.token_type"), nlohmann::json({1, 3}));
  EXPECT_EQ(f->metadata().at("tokenizer.ggml.add_bos_token"), false);
  const GgufTensor& t = f->tensors().at("t");
  EXPECT_EQ(t.dims, (std::vector<int64_t>{2, 1}));
  float second;
  std::memcpy(&second, t.data + 4, 4);
  EXPECT_EQ(second, 2.5f);
}

TEST(GgufFileTest, BrokenFilesAreRefused) {
  GgufWriter w;
  w.String("general.architecture", "llama");
  w.Tensor("t", {2, 1}, kGgmlF32, Le(1.5f) + Le(2.5f));
  const std::string good = w.Bytes();
  struct Case {
    std::string name, bytes, expected;
  };
  std::vector<Case> cases = {
      {"magic", "GGML" + good.substr(4), "no GGUF magic"},
      {"version", w.Bytes(/*version=*/1), "version 1 (supported: 2, 3)"},
      {"header", good.substr(0, 40), "truncated in metadata entry 0"},
      {"data", good.substr(0, good.size() - 28),  // into the 8 bytes before the padding
       "tensor t lies beyond the end of the file (truncated)"},
  };
  // A tensor of a type we do not know has no size, but its offset must
  // still lie inside the file (found by gguf_fuzzer).
  GgufWriter unknown_type;
  unknown_type.Tensor("t", {1}, kGgmlF32, Le(1.5f));
  unknown_type.Tensor("u", {1}, /*type=*/99, "");
  const std::string unknown = unknown_type.Bytes();
  cases.push_back({"unknown-type-offset", unknown.substr(0, unknown.size() - 8),
                   "tensor u lies beyond the end of the file (truncated)"});
  for (const Case& c : cases) {
    absl::StatusOr<GgufFile> f = GgufFile::Open(Write(c.name + ".gguf", c.bytes));
    ASSERT_FALSE(f.ok()) << c.name;
    EXPECT_NE(StatusText(f.status()).find(c.expected), std::string::npos) << c.name << ": " << f.status();
  }
}

nlohmann::json Llama3TokenizerJson() {
  std::ifstream in(INFERD_SHARED_DIR "/models/tokenizers/llama3/tokenizer.json");
  return nlohmann::json::parse(in);
}

// The tokenizer.json a Llama 3 GGUF's metadata stands for carries the Split
// regex and ignore_merges of Llama 3's own tokenizer.json.
TEST(GgufTokenizerTest, Gpt2MetadataBecomesATokenizerJson) {
  GgufWriter w;
  w.Strings("tokenizer.ggml.tokens", {"a", "b", "ab", "<|begin_of_text|>", "<tool>"});
  w.I32s("tokenizer.ggml.token_type", {1, 1, 1, 3, 4});
  w.Strings("tokenizer.ggml.merges", {"a b"});
  w.String("tokenizer.ggml.model", "gpt2");
  w.String("tokenizer.ggml.pre", "llama-bpe");
  w.U32("tokenizer.ggml.bos_token_id", 3);
  w.Bool("tokenizer.ggml.add_bos_token", true);
  absl::StatusOr<GgufFile> f = GgufFile::Open(Write("gpt2.gguf", w.Bytes()));
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<std::pair<nlohmann::json, nlohmann::json>> docs = Gpt2TokenizerJson(*f);
  ASSERT_TRUE(docs.ok()) << docs.status();
  const nlohmann::json& tok = docs->first;
  const nlohmann::json llama3 = Llama3TokenizerJson();
  EXPECT_EQ(tok["pre_tokenizer"]["pretokenizers"][0], llama3["pre_tokenizer"]["pretokenizers"][0]);
  EXPECT_EQ(tok["model"]["ignore_merges"], llama3["model"]["ignore_merges"]);
  EXPECT_EQ(tok["model"]["type"], "BPE");
  EXPECT_EQ(tok["model"]["vocab"], nlohmann::json({{"a", 0}, {"b", 1}, {"ab", 2}, {"<|begin_of_text|>", 3}, {"<tool>", 4}}));
  EXPECT_EQ(tok["model"]["merges"], nlohmann::json({"a b"}));
  EXPECT_EQ(tok["decoder"]["type"], "ByteLevel");
  ASSERT_EQ(tok["added_tokens"].size(), 2u);
  EXPECT_EQ(tok["added_tokens"][0]["content"], "<|begin_of_text|>");
  EXPECT_EQ(tok["added_tokens"][0]["special"], true);
  EXPECT_EQ(tok["added_tokens"][1]["content"], "<tool>");
  EXPECT_EQ(tok["added_tokens"][1]["special"], false);
  EXPECT_EQ(docs->second["add_bos_token"], true);
  EXPECT_EQ(docs->second["bos_token"], "<|begin_of_text|>");
}

TEST(GgufTokenizerTest, UnknownPreTokenizerAndLlamaIdsAreRefused) {
  GgufWriter w;
  w.Strings("tokenizer.ggml.tokens", {"a"});
  w.Strings("tokenizer.ggml.merges", {});
  w.String("tokenizer.ggml.model", "gpt2");
  w.String("tokenizer.ggml.pre", "deepseek-llm");
  absl::StatusOr<GgufFile> f = GgufFile::Open(Write("pre.gguf", w.Bytes()));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NE(StatusText(Gpt2TokenizerJson(*f).status()).find("tokenizer.ggml.pre \"deepseek-llm\" is not supported"),
            std::string::npos);

  GgufWriter llama;
  llama.Strings("tokenizer.ggml.tokens", {"<s>", "</s>", "<unk>"});
  llama.String("tokenizer.ggml.model", "llama");
  llama.U32("tokenizer.ggml.bos_token_id", 0);
  llama.U32("tokenizer.ggml.eos_token_id", 1);
  f = GgufFile::Open(Write("llama-ids.gguf", llama.Bytes()));
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadGgufTokenizer(*f);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(StatusText(tok.status()).find("scores"), std::string::npos) << tok.status();
}

// Found by tests/fuzz/gguf_fuzzer: GGUF strings need not be UTF-8, and the
// error for an unsupported rope scaling type used to dump() the value
// strictly, which threw out of the loader.
TEST(GgufModelTest, NonUtf8RopeScalingTypeIsRefusedNotThrown) {
  GgufWriter w;
  w.String("general.architecture", "llama");
  w.U32("llama.embedding_length", 8);
  w.U32("llama.feed_forward_length", 16);
  w.U32("llama.block_count", 1);
  w.U32("llama.attention.head_count", 2);
  w.U32("llama.context_length", 4);
  w.String("llama.rope.scaling.type", "li\xffnear");
  absl::StatusOr<GgufFile> f = GgufFile::Open(Write("rope-scaling-not-utf8.gguf", w.Bytes()));
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights = LoadGgufWeights(*f, 0, 0);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(StatusText(weights.status()).find("llama.rope.scaling.type"), std::string::npos) << weights.status();
}

}  // namespace
}  // namespace inferd

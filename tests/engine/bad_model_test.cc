// Every kind of bad model gets one line naming the path and the problem and
// a non-zero exit, from the loader and from the real binary's `generate`
// and `serve`; nothing aborts. The bad models are made from the exported
// stories260K (tests/models/export_stories260k.py) by breaking one thing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/model_loader.h"
#include "tests/testing/stories260k_export.h"
#include "tests/testing/subprocess.h"

namespace inferd {
namespace {

namespace fs = std::filesystem;
using ::inferd::testing::ExportedStories260K;
using ::inferd::testing::RunCommand;
using ::inferd::testing::ShellQuote;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void WriteAll(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// A copy of the export's `name` (file or directory) under a fresh name.
fs::path Copy(const std::string& name, const std::string& as) {
  const fs::path dst = fs::path(::testing::TempDir()) / as;
  fs::remove_all(dst);
  fs::copy(fs::path(ExportedStories260K()) / name, dst, fs::copy_options::recursive);
  return dst;
}
// Replaces the first `from` in the file by `to` (same length: offsets stay).
void Patch(const fs::path& p, const std::string& from, const std::string& to) {
  ASSERT_EQ(from.size(), to.size());
  std::string bytes = ReadAll(p);
  const size_t at = bytes.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  bytes.replace(at, from.size(), to);
  WriteAll(p, bytes);
}
void Truncate(const fs::path& p) { fs::resize_file(p, fs::file_size(p) * 3 / 5); }
void EditConfig(const fs::path& dir, const std::string& key, const nlohmann::json& value) {
  nlohmann::json config = nlohmann::json::parse(ReadAll(dir / "config.json"));
  config[key] = value;
  WriteAll(dir / "config.json", config.dump());
}

struct BadModel {
  std::string name;
  fs::path path;
  std::string expected;  // part of the one-line error
};

std::vector<BadModel> MakeBadModels() {
  std::vector<BadModel> bad;
  fs::path p = Copy("hf", "no-tokenizer");
  fs::remove(p / "tokenizer.json");
  fs::remove(p / "tokenizer_config.json");
  bad.push_back({"NoTokenizer", p, "a Hugging Face model directory without a tokenizer (expected tokenizer.json or tokenizer.model)"});

  p = Copy("hf", "truncated-safetensors");
  Truncate(p / "model.safetensors");
  bad.push_back({"TruncatedSafetensors", p, "model.safetensors: tensor "});

  p = Copy("hf", "unknown-arch");
  EditConfig(p, "architectures", {"GPTNeoXForCausalLM"});
  bad.push_back({"UnknownArchitecture", p, "architecture GPTNeoXForCausalLM is not supported"});

  p = Copy("hf", "i32-tensor");
  Patch(p / "model.safetensors", "\"model.norm.weight\":{\"dtype\":\"F32\"", "\"model.norm.weight\":{\"dtype\":\"I32\"");
  bad.push_back({"I32Tensor", p, "model.safetensors: tensor model.norm.weight has dtype I32, which is not supported"});

  p = Copy("hf", "missing-tensor");
  Patch(p / "model.safetensors", "\"model.norm.weight\"", "\"model.norm.weighx\"");
  bad.push_back({"MissingTensor", p, "tensor model.norm.weight is missing"});

  p = Copy("hf", "wrong-shape");
  EditConfig(p, "intermediate_size", 176);
  bad.push_back({"WrongShape", p, "tensor model.layers.0.mlp.gate_proj.weight has shape [172, 64] but config.json implies [176, 64]"});

  p = Copy("stories260K-f32.gguf", "truncated.gguf");
  Truncate(p);
  bad.push_back({"TruncatedGguf", p, "lies beyond the end of the file (truncated)"});

  p = Copy("stories260K-f32.gguf", "q4_k.gguf");
  {
    // The tensor info: name, n_dims (u32), dims (2 x u64), type (u32).
    std::string bytes = ReadAll(p);
    const std::string name = "blk.0.attn_q.weight";
    const size_t at = bytes.find(name) + name.size() + 4 + 16;
    const uint32_t q4_k = 12;
    bytes.replace(at, 4, reinterpret_cast<const char*>(&q4_k), 4);
    WriteAll(p, bytes);
  }
  bad.push_back({"Q4KTensorInGguf", p, "tensor blk.0.attn_q.weight has type Q4_K, which is not supported"});

  p = Copy("stories260K-f32.gguf", "other-arch.gguf");
  // key, value type 8 (string), length 5, value.
  const std::string string_of_5("\x08\0\0\0\x05\0\0\0\0\0\0\0", 12);
  Patch(p, "general.architecture" + string_of_5 + "llama", "general.architecture" + string_of_5 + "qwen2");
  bad.push_back({"UnknownGgufArchitecture", p, "architecture qwen2 is not supported (GGUF: llama)"});

  p = fs::path(::testing::TempDir()) / "notes.txt";
  WriteAll(p, "not a model\n");
  bad.push_back({"NotAModel", p, "not a model file (expected a Hugging Face model directory"});

  p = fs::path(::testing::TempDir()) / "empty-dir";
  fs::create_directories(p);
  bad.push_back({"EmptyDirectory", p, "a directory without a model (expected a Hugging Face model directory"});
  return bad;
}

class BadModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { models_ = new std::vector<BadModel>(MakeBadModels()); }
  static std::vector<BadModel>* models_;
};
std::vector<BadModel>* BadModelTest::models_ = nullptr;

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST_F(BadModelTest, LoaderSaysWhatIsWrongInOneLine) {
  for (const BadModel& m : *models_) {
    absl::StatusOr<LoadedModel> loaded = LoadModel(m.path.string(), LoadOptions{});
    ASSERT_FALSE(loaded.ok()) << m.name;
    const std::string message(loaded.status().message());
    EXPECT_NE(message.find(m.path.string()), std::string::npos) << m.name << ": " << message;
    EXPECT_NE(message.find(m.expected), std::string::npos) << m.name << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << m.name << ": " << message;
  }
}

TEST_F(BadModelTest, GenerateExitsWithOneLine) {
  for (const BadModel& m : *models_) {
    const auto r = RunCommand(std::string(INFERD_BINARY) + " generate --model " + ShellQuote(m.path.string()) +
                              " --prompt hi --max-tokens 2 2>&1");
    EXPECT_EQ(r.exit_code, 1) << m.name << ": " << r.output;
    const std::vector<std::string> lines = Lines(r.output);
    ASSERT_EQ(lines.size(), 1u) << m.name << ": " << r.output;
    EXPECT_EQ(lines[0].rfind("inferd generate: " + m.path.string(), 0), 0u) << m.name << ": " << r.output;
    EXPECT_NE(lines[0].find(m.expected), std::string::npos) << m.name << ": " << r.output;
  }
}

TEST_F(BadModelTest, ServeExitsWithOneErrorLine) {
  for (const BadModel& m : *models_) {
    const auto r = RunCommand(std::string(INFERD_BINARY) + " serve --model " + ShellQuote(m.path.string()) +
                              " --host 127.0.0.1 --port 0 --metrics-port -1 --http-port -1 2>&1");
    EXPECT_EQ(r.exit_code, 1) << m.name << ": " << r.output;
    int errors = 0;
    for (const std::string& line : Lines(r.output)) {
      if (line.find("error") == std::string::npos) continue;
      ++errors;
      EXPECT_NE(line.find(m.expected), std::string::npos) << m.name << ": " << line;
    }
    EXPECT_EQ(errors, 1) << m.name << ": " << r.output;
  }
}

}  // namespace
}  // namespace inferd

// stories260K re-exported as a Hugging Face directory (one file, two shards,
// bf16) and as GGUF (f32, Q8_0) by tests/models/export_stories260k.py,
// served through the real `inferd generate` binary against the public golden
// outputs (llama2.c's run.c, fp32, greedy).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/testing/golden.h"
#include "tests/testing/stories260k_export.h"
#include "tests/testing/subprocess.h"

namespace inferd {
namespace {

using ::inferd::testing::ExportedStories260K;
using ::inferd::testing::RunCommand;
using ::inferd::testing::ShellQuote;

constexpr char kTok512[] = INFERD_SOURCE_DIR "/models/stories260K/tok512.bin";

using ::inferd::testing::GoldenLines;

// Every golden prompt in one `inferd generate --prompts-file` run (the
// engine batches them; greedy output does not depend on the batch).
// 256 tokens each: at least what run.c produced (255 positions after BOS).
struct GenerateRun {
  int exit_code;
  std::string output;
  std::vector<nlohmann::json> results;
};

GenerateRun GenerateAll(const std::string& model, const std::string& extra = "") {
  const std::string prompts = ::testing::TempDir() + "/golden_prompts.txt";
  {
    std::ofstream out(prompts);
    for (const nlohmann::json& g : GoldenLines()) out << g["prompt"].get<std::string>() << "\n";
  }
  // One thread: a 260K-parameter model gains nothing from more.
  const std::string command = std::string(INFERD_BINARY) + " generate --cpu-threads 1 --model " + ShellQuote(model) +
                              " --prompts-file " + ShellQuote(prompts) + " --max-tokens 256 --temperature 0 " +
                              extra + " 2>&1";
  GenerateRun run{.exit_code = -1};
  const auto r = RunCommand(command);
  run.exit_code = r.exit_code;
  run.output = r.output;
  if (r.exit_code == 0) {
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line[0] == '{') run.results.push_back(nlohmann::json::parse(line));
    }
  }
  return run;
}

std::vector<int> Ids(const nlohmann::json& j) { return j.get<std::vector<int>>(); }

void ExpectGolden(const GenerateRun& run) {
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto golden = GoldenLines();
  ASSERT_EQ(run.results.size(), golden.size()) << run.output;
  for (size_t i = 0; i < golden.size(); ++i) {
    const nlohmann::json& g = golden[i];
    const nlohmann::json& out = run.results[i];
    const std::string prompt = g["prompt"];
    EXPECT_EQ(out["prompt_ids"], g["prompt_ids"]) << prompt;
    std::vector<int> got = Ids(out["output_ids"]);
    const std::vector<int> want = Ids(g["output_ids"]);
    if (g["stopped_on_bos"].get<bool>()) {
      EXPECT_EQ(got, want) << prompt;
      EXPECT_EQ(out["finish_reason"], "eos") << prompt;
    } else {
      // run.c stopped at 256 positions; we ran on: compare what it made.
      ASSERT_GE(got.size(), want.size()) << prompt;
      got.resize(want.size());
      EXPECT_EQ(got, want) << prompt;
      const std::string text = prompt + out["text"].get<std::string>();
      EXPECT_EQ(text.substr(0, g["stdout_text"].get<std::string>().size()), g["stdout_text"]) << prompt;
    }
  }
}

TEST(ExportedGoldenTest, HfSingleFileWithTok512) {
  ExpectGolden(GenerateAll(ExportedStories260K() + "/hf", std::string("--tokenizer ") + kTok512));
}

TEST(ExportedGoldenTest, HfTwoShardsWithTok512) {
  ExpectGolden(GenerateAll(ExportedStories260K() + "/hf-sharded", std::string("--tokenizer ") + kTok512));
}

// The GGUF file's own tokenizer (tokenizer.ggml.model llama) and EOS ids.
TEST(ExportedGoldenTest, GgufF32) { ExpectGolden(GenerateAll(ExportedStories260K() + "/stories260K-f32.gguf")); }

// With the tokenizer.json the directory ships (derived from tok512's scores).
TEST(ExportedGoldenTest, HfSingleFileOwnTokenizer) { ExpectGolden(GenerateAll(ExportedStories260K() + "/hf")); }

TEST(ExportedGoldenTest, HfTwoShardsOwnTokenizer) { ExpectGolden(GenerateAll(ExportedStories260K() + "/hf-sharded")); }

// Lower-precision weights stay close to the fp32 reference: the same first
// token on every golden prompt, the same first 8 tokens on most.
void ExpectClose(const GenerateRun& run) {
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto golden = GoldenLines();
  ASSERT_EQ(run.results.size(), golden.size()) << run.output;
  size_t first8_equal = 0;
  for (size_t i = 0; i < golden.size(); ++i) {
    const std::vector<int> want = Ids(golden[i]["output_ids"]);
    const std::vector<int> got = Ids(run.results[i]["output_ids"]);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got[0], want[0]) << golden[i]["prompt"];
    const size_t n = std::min<size_t>(8, want.size());
    if (got.size() >= n && std::equal(want.begin(), want.begin() + n, got.begin())) ++first8_equal;
  }
  EXPECT_GT(first8_equal * 2, golden.size()) << first8_equal << " of " << golden.size() << " keep 8 tokens";
}

TEST(ExportedGoldenTest, HfBf16StaysClose) {
  ExpectClose(GenerateAll(ExportedStories260K() + "/hf-bf16", std::string("--tokenizer ") + kTok512));
}

TEST(ExportedGoldenTest, GgufQ8_0StaysClose) { ExpectClose(GenerateAll(ExportedStories260K() + "/stories260K-q8_0.gguf")); }

// --max-model-len lowers the served context below llama.context_length.
TEST(MaxModelLenTest, GenerateServesTheLoweredContext) {
  const std::string base = std::string(INFERD_BINARY) + " generate --cpu-threads 1 --model " +
                           ShellQuote(ExportedStories260K() + "/stories260K-f32.gguf") +
                           " --prompt 'Once upon a time' --temperature 0 --ignore-eos --max-model-len 16";
  auto fits = RunCommand(base + " --max-tokens 11 2>&1");
  ASSERT_EQ(fits.exit_code, 0) << fits.output;
  EXPECT_EQ(nlohmann::json::parse(fits.output)["output_ids"].size(), 11u);
  auto too_long = RunCommand(base + " --max-tokens 12 2>&1");
  EXPECT_EQ(too_long.exit_code, 1);
  EXPECT_NE(too_long.output.find("exceeds the model's context of 16 tokens"), std::string::npos) << too_long.output;
}

}  // namespace
}  // namespace inferd

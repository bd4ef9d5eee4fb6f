// The public golden outputs (llama2.c's run.c, fp32, greedy, 256 positions)
// reproduced token for token through the real `inferd generate` binary.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/testing/golden.h"
#include "tests/testing/subprocess.h"

namespace inferd {
namespace {

using ::inferd::testing::RunCommand;
using ::inferd::testing::ShellQuote;

using ::inferd::testing::GoldenLines;

nlohmann::json Generate(const std::string& model_arg, const std::string& prompt, int max_tokens,
                        const std::string& extra = "") {
  const std::string command = std::string(INFERD_BINARY) + " generate --model " + ShellQuote(model_arg) +
                              " --prompt " + ShellQuote(prompt) + " --max-tokens " + std::to_string(max_tokens) +
                              " --temperature 0 " + extra;
  auto result = RunCommand(command);
  EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  return nlohmann::json::parse(result.output);
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, EveryPublicLineReproducedExactly) {
  const auto lines = GoldenLines();
  ASSERT_GE(lines.size(), 5u);
  for (const nlohmann::json& golden : lines) {
    const int total_steps = golden["total_steps"];
    const int prompt_len = static_cast<int>(golden["prompt_ids"].size());
    // run.c produces one token per position from the last prompt token on.
    const int max_tokens = total_steps - prompt_len + 1;
    const nlohmann::json out = Generate(GetParam(), golden["prompt"], max_tokens);
    EXPECT_EQ(out["prompt_ids"], golden["prompt_ids"]) << golden["prompt"];
    EXPECT_EQ(out["output_ids"], golden["output_ids"]) << golden["prompt"];
    EXPECT_EQ(out["finish_reason"], golden["stopped_on_bos"].get<bool>() ? "eos" : "length") << golden["prompt"];
    // run.c prints the prompt, then the continuation.
    const std::string prompt = golden["prompt"];
    EXPECT_EQ(prompt + out["text"].get<std::string>(), golden["stdout_text"].get<std::string>()) << prompt;
  }
}

// The fp32 checkpoint, the directory, and the int8 export (which the fp32
// file is the exact dequantization of) all give the reference output.
INSTANTIATE_TEST_SUITE_P(ModelFiles, GoldenTest,
                         ::testing::Values(INFERD_SOURCE_DIR "/models/stories260K",
                                           INFERD_SOURCE_DIR "/models/stories260K/stories260K.bin",
                                           INFERD_SOURCE_DIR "/models/stories260K/stories260K_q80.bin"));

TEST(GenerateCommand, DoneWhenCommandPrintsTheReferenceContinuation) {
  for (const nlohmann::json& golden : GoldenLines()) {
    if (golden["prompt"] != "Once upon a time") continue;
    const nlohmann::json out = Generate(INFERD_SOURCE_DIR "/models/stories260K", "Once upon a time", 252);
    EXPECT_EQ(out["output_ids"], golden["output_ids"]);
    return;
  }
  GTEST_SKIP() << "no golden line for \"Once upon a time\"";
}

TEST(GenerateCommand, PromptsFileKeepsInputOrder) {
  const std::string path = ::testing::TempDir() + "/prompts.txt";
  std::ofstream(path) << "Once upon a time\n\nThe cat\n";
  const std::string command = std::string(INFERD_BINARY) + " generate --model " INFERD_SOURCE_DIR
                              "/models/stories260K --prompts-file " + path + " --max-tokens 8 --temperature 0";
  auto result = RunCommand(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::istringstream lines(result.output);
  std::vector<std::string> prompts;
  for (std::string line; std::getline(lines, line);) prompts.push_back(nlohmann::json::parse(line)["prompt"]);
  EXPECT_EQ(prompts, (std::vector<std::string>{"Once upon a time", "", "The cat"}));
}

TEST(GenerateCommand, BadArgumentsFailWithOneLine) {
  auto missing = RunCommand(std::string(INFERD_BINARY) + " generate --model /nonexistent --prompt hi 2>&1");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("/nonexistent"), std::string::npos) << missing.output;

  auto too_long = RunCommand(std::string(INFERD_BINARY) + " generate --model " INFERD_SOURCE_DIR
                             "/models/stories260K --prompt hi --max-tokens 600 2>&1");
  EXPECT_NE(too_long.exit_code, 0);
  EXPECT_NE(too_long.output.find("context"), std::string::npos) << too_long.output;

  auto no_prompt = RunCommand(std::string(INFERD_BINARY) + " generate --model " INFERD_SOURCE_DIR
                              "/models/stories260K 2>&1");
  EXPECT_NE(no_prompt.exit_code, 0);
}

}  // namespace
}  // namespace inferd

namespace inferd {
namespace {

// Issue scenario: every golden prompt three times at once through a tiny
// pool, tiny budget and few sequences, so preemption, chunked prefill and
// prefix reuse all happen; each output still equals the reference.
TEST(GenerateCommand, ThreeCopiesUnderPressureReproduceTheReference) {
  const auto lines = GoldenLines();
  const std::string path = ::testing::TempDir() + "/golden_x3.txt";
  {
    std::ofstream out(path);
    for (const auto& golden : lines) {
      for (int copy = 0; copy < 3; ++copy) out << golden["prompt"].get<std::string>() << "\n";
    }
  }
  const std::string command = std::string(INFERD_BINARY) + " generate --model " INFERD_SOURCE_DIR
                              "/models/stories260K --prompts-file " + path +
                              " --temperature 0 --max-tokens 200 --kv-cache-blocks 48 --block-size 16"
                              " --max-num-seqs 12 --max-num-batched-tokens 24";
  auto result = testing::RunCommand(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::istringstream out(result.output);
  size_t i = 0;
  for (std::string line; std::getline(out, line); ++i) {
    const nlohmann::json got = nlohmann::json::parse(line);
    const nlohmann::json& golden = lines[i / 3];
    ASSERT_EQ(got["prompt"], golden["prompt"]);
    const std::vector<int> expected = golden["output_ids"];
    const std::vector<int> ids = got["output_ids"];
    const size_t n = std::min<size_t>(expected.size(), 200);
    ASSERT_EQ(ids.size(), n) << golden["prompt"];
    EXPECT_TRUE(std::equal(ids.begin(), ids.end(), expected.begin())) << golden["prompt"];
  }
  EXPECT_EQ(i, lines.size() * 3);
}

}  // namespace
}  // namespace inferd

namespace inferd {
namespace {

// Without a usable GPU, --backend cuda ends with one clear line (no crash,
// no hang); with one, it generates.
TEST(GenerateCommand, BackendCudaRefusesCleanlyWithoutAGpu) {
  auto result = testing::RunCommand(std::string(INFERD_BINARY) + " generate --model " INFERD_SOURCE_DIR
                                    "/models/stories260K --prompt hi --max-tokens 3 --backend cuda 2>&1");
  if (result.exit_code == 0) {
    EXPECT_EQ(nlohmann::json::parse(result.output)["output_ids"].size(), 3u);
    return;
  }
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
  EXPECT_NE(result.output.find("--backend cuda: no usable GPU"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace inferd

// inferd-bench's datasets: synthetic prompts, JSONL and ShareGPT files, and
// the GenerateRequest each request becomes.
#include "benchmarks/inferd_bench/dataset.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace inferd::bench {
namespace {

std::string WriteFile(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << contents;
  return path;
}

TEST(SyntheticDatasetTest, ExactLengthsAndIdsInsideTheVocabulary) {
  auto dataset = MakeSyntheticDataset({.input_len = 64, .output_len = 17, .vocab_size = 100, .seed = 3});
  std::set<int32_t> seen;
  for (int i = 0; i < 50; ++i) {
    const BenchRequest r = dataset->At(i);
    ASSERT_EQ(r.token_ids.size(), 64u);
    EXPECT_EQ(r.output_len, 17);
    for (int32_t id : r.token_ids) {
      ASSERT_GE(id, kFirstTokenId);
      ASSERT_LT(id, 100);
      seen.insert(id);
    }
  }
  EXPECT_EQ(seen.size(), 97u);  // 3200 draws cover all of [3, 100)
}

TEST(SyntheticDatasetTest, DeterministicPerIndexAndDistinctAcrossIndices) {
  auto a = MakeSyntheticDataset({.input_len = 32, .output_len = 8, .seed = 5});
  auto b = MakeSyntheticDataset({.input_len = 32, .output_len = 8, .seed = 5});
  EXPECT_EQ(a->At(7).token_ids, b->At(7).token_ids);
  // Prompts must not share a first block, or the prefix cache would hit.
  EXPECT_NE(a->At(7).token_ids[0], a->At(8).token_ids[0]);
  auto c = MakeSyntheticDataset({.input_len = 32, .output_len = 8, .seed = 6});
  EXPECT_NE(a->At(7).token_ids, c->At(7).token_ids);
}

TEST(SyntheticDatasetTest, RangeRatioSpreadsLengthsUniformly) {
  auto dataset = MakeSyntheticDataset({.input_len = 100, .output_len = 50, .range_ratio = 0.5, .seed = 1});
  int min_in = 1 << 30, max_in = 0, min_out = 1 << 30, max_out = 0;
  double sum_in = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const BenchRequest r = dataset->At(i);
    const int in = static_cast<int>(r.token_ids.size());
    min_in = std::min(min_in, in), max_in = std::max(max_in, in), sum_in += in;
    min_out = std::min(min_out, r.output_len), max_out = std::max(max_out, r.output_len);
  }
  EXPECT_EQ(min_in, 50);
  EXPECT_EQ(max_in, 150);
  EXPECT_EQ(min_out, 25);
  EXPECT_EQ(max_out, 75);
  EXPECT_NEAR(sum_in / n, 100.0, 2.0);
}

TEST(BenchRequestTest, OutputLengthIsExact) {
  BenchRequest r;
  r.token_ids = {5, 6, 7};
  r.output_len = 9;
  const v1::GenerateRequest proto = r.ToProto();
  EXPECT_EQ(proto.token_ids().ids_size(), 3);
  EXPECT_EQ(proto.stopping().max_tokens(), 9u);
  EXPECT_TRUE(proto.stopping().ignore_eos());

  BenchRequest text;
  text.text = "hello";
  const v1::GenerateRequest open_ended = text.ToProto();
  EXPECT_EQ(open_ended.text(), "hello");
  EXPECT_FALSE(open_ended.stopping().has_max_tokens());  // the server decides
  EXPECT_FALSE(open_ended.stopping().ignore_eos());
}

TEST(JsonlTest, ReadsPromptsWithOptionalOutputLengths) {
  const std::string path =
      WriteFile("prompts.jsonl", "{\"prompt\": \"one\", \"output_len\": 12}\n\n{\"prompt\": \"two\"}\n");
  auto requests = LoadJsonl(path);
  ASSERT_TRUE(requests.ok()) << requests.status();
  ASSERT_EQ(requests->size(), 2u);
  EXPECT_EQ((*requests)[0].text, "one");
  EXPECT_EQ((*requests)[0].output_len, 12);
  EXPECT_EQ((*requests)[1].output_len, 0);
  auto dataset = MakeListDataset(*requests);
  EXPECT_EQ(dataset->At(3).text, "two");  // cycles
}

TEST(JsonlTest, ErrorsNameTheLine) {
  auto bad = LoadJsonl(WriteFile("bad.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(":2:"), std::string::npos) << bad.status();
  EXPECT_FALSE(LoadJsonl(WriteFile("len.jsonl", "{\"prompt\": \"x\", \"output_len\": 0}\n")).ok());
  EXPECT_EQ(LoadJsonl(::testing::TempDir() + "/missing.jsonl").status().code(), absl::StatusCode::kNotFound);
}

// Whitespace-separated words stand in for the server's tokenizer.
absl::StatusOr<int> CountWords(const std::string& text) {
  std::istringstream in(text);
  int n = 0;
  for (std::string word; in >> word;) ++n;
  return n;
}

TEST(ShareGptTest, FirstHumanTurnIsThePromptAndTheReplySetsTheLength) {
  const std::string path = WriteFile("sharegpt.json", R"([
    {"id": "a", "conversations": [
      {"from": "system", "value": "be nice"},
      {"from": "human", "value": "tell me a story please now"},
      {"from": "gpt", "value": "once upon a time there was"},
      {"from": "human", "value": "more"}, {"from": "gpt", "value": "no"}]},
    {"id": "short", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello to you too"}]},
    {"id": "long", "conversations": [{"from": "human", "value": "a b c d e f g h i j"},
                                     {"from": "gpt", "value": "a b c d e f g h i j"}]},
    {"id": "no reply", "conversations": [{"from": "human", "value": "anyone there at all"}]}
  ])");
  auto requests = LoadShareGpt(path, {.max_requests = 10, .max_context = 20, .seed = 0}, CountWords);
  ASSERT_TRUE(requests.ok()) << requests.status();
  // "short" has a 1-token prompt, "long" needs 10 + 1 + 10 > 20 tokens.
  ASSERT_EQ(requests->size(), 1u);
  EXPECT_EQ((*requests)[0].text, "tell me a story please now");
  EXPECT_EQ((*requests)[0].output_len, 6);
}

TEST(ShareGptTest, TokenizerErrorsStopTheLoad) {
  const std::string path = WriteFile("sharegpt2.json", R"([{"conversations": [
      {"from": "human", "value": "a b c d"}, {"from": "gpt", "value": "a b c d"}]}])");
  auto requests = LoadShareGpt(path, {}, [](const std::string&) -> absl::StatusOr<int> {
    return absl::UnavailableError("down");
  });
  EXPECT_EQ(requests.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace inferd::bench

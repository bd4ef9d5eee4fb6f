// The engine with a tokenizer that cleans up spaces (Hugging Face's
// clean_up_tokenization_spaces): the detokenizer then holds back the last
// word until the end, and a stop string in it must still stop the request.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_replace.h"
#include "engine/engine.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "tests/testing/engine_harness.h"

namespace inferd {
namespace {

// stories260K's own vocabulary as a SentencePiece-style tokenizer.json
// (decode only: no merges are needed), with clean-up on.
std::shared_ptr<const Tokenizer> CleaningTok512() {
  const Tokenizer& tok512 = *testing::Stories260K().tokenizer;
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (int id = 0; id < tok512.vocab_size(); ++id) {
    const std::string piece = absl::StrReplaceAll(tok512.Piece(id), {{" ", "\xE2\x96\x81"}});
    if (id < 3) added.push_back({{"id", id}, {"content", piece}, {"special", true}});
    if (!vocab.contains(piece)) vocab[piece] = id;
  }
  const nlohmann::json doc = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}, {"byte_fallback", true}}},
      {"added_tokens", added},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
  };
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      HfTokenizerFromJson(doc, {{"clean_up_tokenization_spaces", true}});
  if (!tok.ok()) {
    ADD_FAILURE() << tok.status();
    return nullptr;
  }
  return *std::move(tok);
}

testing::Collected RunWith(std::shared_ptr<const Tokenizer> tok, Request request) {
  auto backend = CpuBackend::Create(testing::Stories260K().weights, {.num_blocks = 64, .block_size = 16});
  EXPECT_TRUE(backend.ok()) << backend.status();
  auto engine = Engine::Create(EngineConfig{}, *std::move(backend), std::move(tok));
  EXPECT_TRUE(engine.ok()) << engine.status();
  testing::Collector collector;
  request.on_output = collector.CallbackFor(request.id);
  EXPECT_TRUE((*engine)->Submit(std::move(request)).ok());
  EXPECT_TRUE((*engine)->WaitUntilIdle(absl::Now() + absl::Seconds(60)));
  return collector.Get("r");
}

TEST(EngineCleanUp, StopStringInTheHeldBackWordStops) {
  const std::shared_ptr<const Tokenizer> tok = CleaningTok512();
  ASSERT_NE(tok, nullptr);
  const std::vector<int> prompt = testing::Stories260K().tokenizer->Encode("Once upon a time", true);
  const testing::Collected free_run = RunWith(tok, testing::MakeRequest("r", prompt, 12));
  ASSERT_EQ(free_run.last.finish_reason, FinishReason::kLength);
  const std::string& text = free_run.text;
  // The last word: held by the detokenizer until the request ends.
  const size_t space = text.rfind(' ');
  ASSERT_NE(space, std::string::npos) << text;
  const std::string last_word = text.substr(space);
  ASSERT_EQ(text.find(last_word), space) << "the last word also appears earlier: " << text;

  Request stopped = testing::MakeRequest("r", prompt, 12);
  stopped.stopping.stop = {last_word};
  const testing::Collected run = RunWith(tok, std::move(stopped));
  EXPECT_EQ(run.last.finish_reason, FinishReason::kStopString);
  EXPECT_EQ(run.last.matched_stop, last_word);
  EXPECT_EQ(run.text, text.substr(0, space));
}

}  // namespace
}  // namespace inferd

#include "engine/tokenizer/stop_string_matcher.h"

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/llama2c_tokenizer.h"
#include "gtest/gtest.h"

namespace inferd {
namespace {

struct Outcome {
  std::string released;  // all releases, plus Flush when nothing matched
  int matched = -1;
};

// Pushes `chunks` in order and gathers what comes out.
Outcome PushAll(StopStringMatcher& matcher,
                const std::vector<std::string>& chunks) {
  Outcome outcome;
  for (const std::string& chunk : chunks) {
    StopStringMatcher::Result result = matcher.Push(chunk);
    outcome.released += result.released;
    if (result.matched >= 0) {
      EXPECT_EQ(outcome.matched, -1) << "matched twice";
      outcome.matched = result.matched;
    }
  }
  outcome.released += matcher.Flush();
  return outcome;
}

// One chunk per UTF-8 character.
std::vector<std::string> Chars(std::string_view text) {
  std::vector<std::string> chunks;
  for (size_t i = 0; i < text.size();) {
    size_t n = 1;
    while (i + n < text.size() && (text[i + n] & 0xC0) == 0x80) ++n;
    chunks.emplace_back(text.substr(i, n));
    i += n;
  }
  return chunks;
}

TEST(StopStringMatcherTest, MatchSplitAcrossManyPushes) {
  StopStringMatcher matcher({"The End"});
  const Outcome out = PushAll(matcher, Chars("and they lived. The End. More"));
  EXPECT_EQ(out.released, "and they lived. ");
  EXPECT_EQ(out.matched, 0);
}

TEST(StopStringMatcherTest, HoldsOnlyThePossiblePrefix) {
  StopStringMatcher matcher({"STOP"});
  StopStringMatcher::Result r = matcher.Push("abc ST");
  EXPECT_EQ(r.released, "abc ");
  EXPECT_EQ(r.matched, -1);
  r = matcher.Push("O");
  EXPECT_EQ(r.released, "");
  r = matcher.Push("x S");  // diverges: "STOx" goes out, the new "S" waits
  EXPECT_EQ(r.released, "STOx ");
  EXPECT_EQ(matcher.Flush(), "S");
}

TEST(StopStringMatcherTest, DivergingTextIsReleasedExactlyOnce) {
  const std::vector<std::string> stops = {"abcab", "xyz", "aab"};
  // Many partial matches that diverge, overlap, and one left at the end.
  const std::string no_match = "abcaXabcaxaXyzyaaXabcacxaby-aa";
  StopStringMatcher matcher(stops);
  Outcome out = PushAll(matcher, Chars(no_match));
  EXPECT_EQ(out.matched, -1);
  EXPECT_EQ(out.released, no_match);

  // A match that starts inside a failed partial match ("abca|abcab").
  StopStringMatcher second({"abcab"});
  out = PushAll(second, Chars("xxabcaabcabyy"));
  EXPECT_EQ(out.matched, 0);
  EXPECT_EQ(out.released, "xxabca");
}

TEST(StopStringMatcherTest, ChunkingDoesNotChangeTheResult) {
  const std::string text = "one two three\nUser: hi\n\nfour";
  for (size_t chunk = 1; chunk <= text.size(); ++chunk) {
    StopStringMatcher matcher({"\n\n", "User:"});
    std::vector<std::string> chunks;
    for (size_t i = 0; i < text.size(); i += chunk) {
      chunks.push_back(text.substr(i, chunk));
    }
    const Outcome out = PushAll(matcher, chunks);
    EXPECT_EQ(out.released, "one two three\n") << chunk;
    EXPECT_EQ(out.matched, 1) << chunk;
  }
}

// Against a one-shot search of the whole text, over random texts, stop
// strings and chunkings. No stop string contains another: only then is the
// earliest match independent of chunking (see stop_string_matcher.cc).
TEST(StopStringMatcherTest, RandomChunkingMatchesWholeTextSearch) {
  std::mt19937 rng(7);
  auto random_string = [&](int max_len) {
    std::string s(1 + rng() % max_len, ' ');
    for (char& c : s) c = "abc"[rng() % 3];
    return s;
  };
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops;
    for (int i = 0, n = 1 + rng() % 3; i < n; ++i) {
      stops.push_back(random_string(4));
    }
    bool nested = false;
    for (const std::string& a : stops) {
      for (const std::string& b : stops) {
        nested |= &a != &b && b.find(a) != std::string::npos;
      }
    }
    if (nested) continue;
    const std::string text = random_string(24);
    size_t first = std::string::npos;
    int expected = -1;
    for (size_t i = 0; i < stops.size(); ++i) {
      if (text.find(stops[i]) < first) {
        first = text.find(stops[i]);
        expected = static_cast<int>(i);
      }
    }
    std::vector<std::string> chunks;
    for (size_t i = 0; i < text.size();) {
      const size_t n = 1 + rng() % 5;
      chunks.push_back(text.substr(i, n));
      i += n;
    }
    StopStringMatcher matcher(stops);
    const Outcome out = PushAll(matcher, chunks);
    EXPECT_EQ(out.matched, expected) << text;
    EXPECT_EQ(out.released, text.substr(0, first)) << text;
  }
}

TEST(StopStringMatcherTest, EarliestMatchWins) {
  StopStringMatcher matcher({"world", "lo w", "hello"});
  StopStringMatcher::Result r = matcher.Push("say hello world");
  EXPECT_EQ(r.released, "say ");
  EXPECT_EQ(r.matched, 2);
}

TEST(StopStringMatcherTest, SamePositionPrefersFirstListed) {
  StopStringMatcher matcher({"ab", "abc"});
  StopStringMatcher::Result r = matcher.Push("xabcd");
  EXPECT_EQ(r.released, "x");
  EXPECT_EQ(r.matched, 0);
}

TEST(StopStringMatcherTest, MatchInsideOnePushAndNothingAfter) {
  StopStringMatcher matcher({"</s>"});
  StopStringMatcher::Result r = matcher.Push("done</s>trailing");
  EXPECT_EQ(r.released, "done");
  EXPECT_EQ(r.matched, 0);
  r = matcher.Push("more text");
  EXPECT_EQ(r.released, "");
  EXPECT_EQ(r.matched, -1);
  r = matcher.Push("more text", /*check=*/false);
  EXPECT_EQ(r.released, "");
  EXPECT_EQ(matcher.Flush(), "");
}

TEST(StopStringMatcherTest, MultibyteStopStrings) {
  StopStringMatcher matcher({"中文", "😀!"});
  const Outcome out = PushAll(matcher, Chars("é 中x 😀 中文 rest"));
  EXPECT_EQ(out.released, "é 中x 😀 ");
  EXPECT_EQ(out.matched, 0);

  StopStringMatcher emoji({"中文", "😀!"});
  StopStringMatcher::Result r = emoji.Push("a😀");
  EXPECT_EQ(r.released, "a");  // the emoji could start "😀!"
  r = emoji.Push("!b");
  EXPECT_EQ(r.released, "");
  EXPECT_EQ(r.matched, 1);
}

TEST(StopStringMatcherTest, UncheckedTextIsReleasedWithWhatWasHeld) {
  StopStringMatcher matcher({"STOP"});
  EXPECT_EQ(matcher.Push("a ST").released, "a ");
  // min_tokens not reached: nothing may match, even completing "STOP".
  StopStringMatcher::Result r = matcher.Push("OP", /*check=*/false);
  EXPECT_EQ(r.released, "STOP");
  EXPECT_EQ(r.matched, -1);
  EXPECT_EQ(matcher.Flush(), "");
  r = matcher.Push(" STOP");
  EXPECT_EQ(r.released, " ");
  EXPECT_EQ(r.matched, 0);
}

TEST(StopStringMatcherTest, NoOrEmptyStopStringsReleaseEverything) {
  StopStringMatcher none({});
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.Push("abc").released, "abc");
  StopStringMatcher empty_only({"", "z"});
  StopStringMatcher::Result r = empty_only.Push("abc");
  EXPECT_EQ(r.released, "abc");
  EXPECT_EQ(r.matched, -1);
}

TEST(StopStringMatcherTest, WithDetokenizerAcrossTokenBoundaries) {
  auto tok = Llama2cTokenizer::Load(
      INFERD_SOURCE_DIR "/models/stories260K/tok512.bin", 512);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = "Lily saw a big dog. The dog was happy 😀 and ran.";
  std::vector<int> ids = tok->Encode(text, true);
  const std::string stop = "dog was happy 😀 and";

  IncrementalDetokenizer detok(&*tok, Llama2cTokenizer::kBosId);
  StopStringMatcher matcher({"never", stop});
  std::string released;
  int matched = -1;
  size_t stopped_at = 0;
  for (size_t i = 1; i < ids.size() && matched < 0; ++i) {
    StopStringMatcher::Result r = matcher.Push(detok.Append(ids[i]));
    released += r.released;
    matched = r.matched;
    stopped_at = i;
  }
  EXPECT_EQ(matched, 1);
  EXPECT_EQ(released, "Lily saw a big dog. The ");
  // It stopped on the very token that completed the stop string.
  const size_t stop_end = text.find(stop) + stop.size();
  auto decoded_through = [&](size_t last) {
    return tok->Decode(
        std::vector<int>(ids.begin() + 1, ids.begin() + last + 1),
        Llama2cTokenizer::kBosId);
  };
  EXPECT_GE(decoded_through(stopped_at).size(), stop_end);
  EXPECT_LT(decoded_through(stopped_at - 1).size(), stop_end);
  // And the stop string spans many tokens (the emoji alone is four byte
  // tokens): its start was decoded six tokens before the one completing it.
  EXPECT_GT(decoded_through(stopped_at - 6).size(), text.find(stop));
}

}  // namespace
}  // namespace inferd

// HfTokenizer against Hugging Face's own implementation: the ids and decodes
// in tests/tokenizer_reference/expected/ were written by
// @huggingface/tokenizers (tests/tokenizer_reference/generate.mjs) from the
// real tokenizer.json files in ../shared/models/tokenizers/.
#include "engine/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <ctime>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "gtest/gtest.h"
#include "tests/testing/sanitizers.h"

namespace inferd {
namespace {

std::string TokenizersDir() { return std::string(INFERD_SHARED_DIR) + "/models/tokenizers/"; }

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string Stream(const Tokenizer& tok, const std::vector<int>& ids, int prev) {
  IncrementalDetokenizer detok(&tok, prev);
  std::string text;
  for (int id : ids) text += detok.Append(id);
  return text + detok.Flush();
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& ch : name) {
    if (ch == '-') ch = '_';
  }
  return name;
}

// Encode ids (without and with the post-processor's specials), Decode and
// the streamed decode, for every string of the corpus.
void ExpectMatchesReference(const Tokenizer& tokenizer, const std::string& name) {
  const Tokenizer* tok = &tokenizer;
  const nlohmann::json expected =
      ReadJson(std::string(INFERD_SOURCE_DIR) + "/tests/tokenizer_reference/expected/" + name + ".json");
  ASSERT_GE(expected["cases"].size(), 40u);
  for (const nlohmann::json& c : expected["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(::testing::Message() << name << ": \"" << text << "\"");
    const std::vector<int> ids = c["ids"];
    EXPECT_EQ(tok->Encode(text, false), ids);
    EXPECT_EQ(tok->Encode(text, tok->AddsBosByDefault()), c["ids_with_special_tokens"].get<std::vector<int>>());
    const std::string decoded = c["decoded_skip_special"];
    EXPECT_EQ(tok->Decode(ids), decoded);
    EXPECT_EQ(Stream(*tok, ids, -1), decoded);
  }
}

class HfReferenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfReferenceTest, MatchesHuggingFace) {
  const std::string dir = TokenizersDir() + GetParam();
  const double start = ThreadCpuSeconds();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      LoadHfTokenizer(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
  const double load_s = ThreadCpuSeconds() - start;
  ASSERT_TRUE(tok.ok()) << tok.status();
  // CI loads each tokenizer once per test process; keep that cheap. CPU
  // time, not wall time: CI machines are shared.
  EXPECT_LT(load_s, 1.5 * inferd::testing::kSanitizerSlowdown) << "loading " << dir;
  ExpectMatchesReference(**tok, GetParam());
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, HfReferenceTest, ::testing::Values("llama3", "qwen3", "spm-bpe-32k"),
                         TestName);

// tests/tokenizer_reference/variants.json: a real tokenizer.json with stages
// replaced (Metaspace; GPT-2's ByteLevel regex with add_prefix_space), the
// same overrides generate.mjs applied for the reference.
class HfVariantTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfVariantTest, MatchesHuggingFace) {
  const nlohmann::json variants = ReadJson(std::string(INFERD_SOURCE_DIR) + "/tests/tokenizer_reference/variants.json");
  for (const nlohmann::json& v : variants) {
    if (v["name"] != GetParam()) continue;
    const std::string dir = TokenizersDir() + v["base"].get<std::string>();
    nlohmann::json doc = ReadJson(dir + "/tokenizer.json");
    for (const auto& [key, value] : v["override"].items()) doc[key] = value;
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
        HfTokenizerFromJson(doc, ReadJson(dir + "/tokenizer_config.json"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    ExpectMatchesReference(**tok, GetParam());
    return;
  }
  FAIL() << "no variant " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Variants, HfVariantTest, ::testing::Values("spm-bpe-32k-metaspace", "qwen3-gpt2-prefix"),
                         TestName);

// Streamed text equals Decode for any ids: special tokens anywhere (the
// Strip rule looks through them), clean-up across token boundaries, any
// starting token. Ids whose text is a whole UTF-8 string keep Decode valid.
TEST(HfTokenizer, StreamEqualsDecodeOnRandomIds) {
  const std::string dir = TokenizersDir() + "spm-bpe-32k";
  nlohmann::json config = ReadJson(dir + "/tokenizer_config.json");
  config["clean_up_tokenization_spaces"] = true;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = HfTokenizerFromJson(ReadJson(dir + "/tokenizer.json"), config);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<int> pool = {0, 1, 2};  // <unk>, <s>, </s>
  for (const char* text : {"Hello , world . I 'm sure you 're right ! Don 't ? It 's", "  a  b ' c n't 've"}) {
    for (int id : (*tok)->Encode(text, false)) pool.push_back(id);
  }
  std::mt19937 rng(11);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int> ids(std::uniform_int_distribution<int>(0, 12)(rng));
    for (int& id : ids) id = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
    const int prev = std::uniform_int_distribution<int>(0, 1)(rng) ? -1 : pool.back();
    ASSERT_EQ(Stream(**tok, ids, prev), (*tok)->Decode(ids, prev)) << ::testing::PrintToString(ids);
  }
}

// A small byte-level tokenizer.json written here, for the rules the real
// files do not exercise.
nlohmann::json TinyByteLevel() {
  nlohmann::json vocab = nlohmann::json::object();
  // The GPT-2 alphabet's printable ASCII stands for itself; 'Ġ' is ' '.
  int id = 0;
  for (char c = '!'; c <= '~'; ++c) vocab[std::string(1, c)] = id++;
  vocab["\xC4\xA0"] = id++;  // Ġ
  vocab["ab"] = id++;
  vocab["\xC4\xA0" "ab"] = id++;
  return nlohmann::json{
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "\xC4\xA0 ab"}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens",
       {{{"id", 100}, {"content", "<|x|>"}, {"special", true}, {"lstrip", true}, {"rstrip", false},
         {"normalized", false}, {"single_word", false}},
        {{"id", 101}, {"content", "[y]"}, {"special", false}, {"lstrip", false}, {"rstrip", true},
         {"normalized", false}, {"single_word", false}}}},
  };
}

TEST(HfTokenizer, AddedTokensHonourLstripRstripAndParseSpecial) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = HfTokenizerFromJson(TinyByteLevel(), nullptr);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int ab = 95;  // after the 94 printable characters and Ġ
  const int space_ab = ab + 1;
  // lstrip: the spaces before <|x|> are part of the token.
  EXPECT_EQ((*tok)->Encode("ab  <|x|>ab", false), (std::vector<int>{ab, 100, ab}));
  // rstrip: the spaces after [y] are part of it.
  EXPECT_EQ((*tok)->Encode("[y]   ab", false), (std::vector<int>{101, ab}));
  // parse_special=false: the special token is text; the non-special one is
  // still matched.
  const std::vector<int> plain = (*tok)->Encode("<|x|> [y]", {.parse_special = false});
  EXPECT_EQ(plain.front(), '<' - '!');
  EXPECT_EQ(plain.back(), 101);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 100), 0);
  EXPECT_EQ((*tok)->Encode(" ab", false), (std::vector<int>{space_ab}));
  EXPECT_TRUE((*tok)->IsSpecial(100));
  EXPECT_FALSE((*tok)->IsSpecial(101));
  EXPECT_EQ((*tok)->Decode({ab, 100, 101, space_ab}), "ab[y] ab");
  // No post-processor and no config: no BOS.
  EXPECT_FALSE((*tok)->AddsBosByDefault());
}

TEST(HfTokenizer, ErrorsNameTheJsonPath) {
  nlohmann::json doc = TinyByteLevel();
  doc["model"]["merges"][1] = "a b c";
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = HfTokenizerFromJson(doc, nullptr);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("model.merges[1]"), std::string::npos) << tok.status();

  doc = TinyByteLevel();
  doc["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}};
  tok = HfTokenizerFromJson(doc, nullptr);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(tok.status().message().find("pre_tokenizer.pretokenizers[0].type"), std::string::npos) << tok.status();

  doc = TinyByteLevel();
  doc["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  tok = HfTokenizerFromJson(doc, nullptr);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("pre_tokenizer.pattern"), std::string::npos) << tok.status();

  doc = TinyByteLevel();
  doc["added_tokens"][1]["id"] = int64_t{1} << 40;  // would size tables by it
  tok = HfTokenizerFromJson(doc, nullptr);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("added_tokens[1].id"), std::string::npos) << tok.status();

  // A number that is no integer (hf_tokenizer_fuzzer: casting 1e76 to int
  // was undefined behaviour) is refused, naming its path.
  doc = TinyByteLevel();
  doc["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", 1.11e76}, {"stop", 0}};
  tok = HfTokenizerFromJson(doc, nullptr);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("decoder.start: expected an integer"), std::string::npos) << tok.status();

  doc = TinyByteLevel();
  tok = HfTokenizerFromJson(doc, nlohmann::json{{"bos_token", "<nope>"}});
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("tokenizer_config.json: bos_token"), std::string::npos) << tok.status();
}

TEST(HfTokenizer, LoadErrorsNameTheFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadHfTokenizer("/nonexistent/tokenizer.json", "");
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("/nonexistent/tokenizer.json"), std::string::npos);

  const std::string bad = ::testing::TempDir() + "/bad_tokenizer.json";
  std::ofstream(bad) << "{\"model\": {\"type\": \"Unigram\"}}";
  tok = LoadHfTokenizer(bad, "");
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find(bad + ": model.type"), std::string::npos) << tok.status();
}

// Invalid UTF-8 in a prompt (a caller other than the server) is encoded as
// U+FFFD rather than handed to PCRE2 unchecked.
TEST(HfTokenizer, InvalidUtf8IsRepaired) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = HfTokenizerFromJson(TinyByteLevel(), nullptr);
  ASSERT_TRUE(tok.ok());
  // U+FFFD is not in the tiny vocabulary: its bytes are dropped, the rest kept.
  EXPECT_EQ((*tok)->Encode("ab\xFF", false), (*tok)->Encode("ab", false));
}

}  // namespace
}  // namespace inferd

namespace inferd {
namespace {

// Long runs of one character (the regexes' \s+, \p{L}+ and lookahead meet
// them whole; SentencePiece-style BPE sees one giant word) encode quickly,
// completely and round-trip.
TEST(HfTokenizer, LongRunsEncodeAndRoundTrip) {
  for (const std::string name : {"llama3", "spm-bpe-32k"}) {
    const std::string dir = TokenizersDir() + name;
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
        LoadHfTokenizer(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
    ASSERT_TRUE(tok.ok()) << tok.status();
    for (const std::string unit : {"a", " ", "\n", "7", "\xF0\x9F\x98\x80", " a", "\t\n "}) {
      std::string text;
      while (text.size() < (256 << 10)) text += unit;
      const double start = ThreadCpuSeconds();
      const std::vector<int> ids = (*tok)->Encode(text, false);
      const double seconds = ThreadCpuSeconds() - start;
      SCOPED_TRACE(::testing::Message() << name << ", unit \"" << unit << "\"");
      EXPECT_LT(seconds, 1.0 * inferd::testing::kSanitizerSlowdown);
      EXPECT_EQ((*tok)->Decode(ids), text);
    }
  }
}

}  // namespace
}  // namespace inferd

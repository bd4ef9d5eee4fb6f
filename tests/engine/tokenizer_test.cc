#include "engine/tokenizer/llama2c_tokenizer.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace inferd {
namespace {

constexpr char kTok512Path[] = INFERD_SOURCE_DIR "/models/stories260K/tok512.bin";
constexpr char kLlamaPath[] = INFERD_SOURCE_DIR "/models/llama2-tokenizer/tokenizer.bin";
constexpr char kGoldenPath[] = INFERD_SHARED_DIR "/golden/stories260K_greedy_public.jsonl";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "/tokenizer_test_" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

template <typename T>
void Append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// llama2.c's encode(), ported line for line (quadratic merge loop), over a
// vocabulary parsed here independently of the code under test.
class NaiveLlama2c {
 public:
  NaiveLlama2c(const std::string& path, int vocab_size) {
    const std::string data = ReadFile(path);
    size_t pos = 4;
    for (int i = 0; i < vocab_size; ++i) {
      float score;
      int32_t len;
      std::memcpy(&score, data.data() + pos, 4);
      std::memcpy(&len, data.data() + pos + 4, 4);
      pos += 8;
      vocab_.push_back(data.substr(pos, len));
      scores_.push_back(score);
      lookup_.emplace(vocab_.back(), i);
      pos += len;
    }
  }

  std::vector<int> Encode(const std::string& text, bool bos) const {
    std::vector<int> tokens;
    if (bos) tokens.push_back(1);
    if (!text.empty()) tokens.push_back(Lookup(" "));
    std::string buf;
    for (size_t c = 0; c < text.size(); ++c) {
      if ((text[c] & 0xC0) != 0x80) buf.clear();
      buf.push_back(text[c]);
      if (c + 1 < text.size() && (text[c + 1] & 0xC0) == 0x80 && buf.size() < 4) continue;
      const int id = Lookup(buf);
      if (id != -1) {
        tokens.push_back(id);
      } else {
        for (char b : buf) tokens.push_back(static_cast<unsigned char>(b) + 3);
      }
      buf.clear();
    }
    while (true) {
      float best_score = -1e10;
      int best_id = -1;
      int best_idx = -1;
      for (size_t i = 0; i + 1 < tokens.size(); ++i) {
        buf = vocab_[tokens[i]] + vocab_[tokens[i + 1]];
        const int id = Lookup(buf);
        if (id != -1 && scores_[id] > best_score) {
          best_score = scores_[id];
          best_id = id;
          best_idx = static_cast<int>(i);
        }
      }
      if (best_idx == -1) break;
      tokens[best_idx] = best_id;
      tokens.erase(tokens.begin() + best_idx + 1);
    }
    return tokens;
  }

  const std::vector<std::string>& vocab() const { return vocab_; }

 private:
  int Lookup(const std::string& s) const {
    auto it = lookup_.find(s);
    return it == lookup_.end() ? -1 : it->second;
  }

  std::vector<std::string> vocab_;
  std::vector<float> scores_;
  std::map<std::string, int> lookup_;
};

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto small = Llama2cTokenizer::Load(kTok512Path, 512);
    ASSERT_TRUE(small.ok()) << small.status();
    tok512_ = new Llama2cTokenizer(*std::move(small));
    auto llama = Llama2cTokenizer::Load(kLlamaPath, 32000);
    ASSERT_TRUE(llama.ok()) << llama.status();
    llama_ = new Llama2cTokenizer(*std::move(llama));
  }
  static void TearDownTestSuite() {
    delete tok512_;
    delete llama_;
  }

  // What llama2.c prints for a prompt: everything after BOS.
  static std::string RoundTrip(const Tokenizer& tok, const std::string& text) {
    const std::vector<int> ids = tok.Encode(text, /*add_bos=*/true);
    EXPECT_EQ(ids.front(), Llama2cTokenizer::kBosId);
    return tok.Decode(absl::MakeConstSpan(ids).subspan(1), ids.front());
  }

  static Llama2cTokenizer* tok512_;
  static Llama2cTokenizer* llama_;
};

Llama2cTokenizer* TokenizerTest::tok512_ = nullptr;
Llama2cTokenizer* TokenizerTest::llama_ = nullptr;

TEST_F(TokenizerTest, VocabSizesAndPieces) {
  EXPECT_EQ(tok512_->vocab_size(), 512);
  EXPECT_EQ(llama_->vocab_size(), 32000);
  EXPECT_EQ(tok512_->Piece(0), "<unk>");
  EXPECT_EQ(tok512_->Piece(13), "<0x0A>");
  EXPECT_EQ(llama_->Piece(259), "  ");
}

TEST_F(TokenizerTest, GoldenPromptIds) {
  std::ifstream in(kGoldenPath);
  ASSERT_TRUE(in) << kGoldenPath;
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json g = nlohmann::json::parse(line);
    const std::string prompt = g["prompt"];
    EXPECT_EQ(tok512_->Encode(prompt, true), g["prompt_ids"].get<std::vector<int>>())
        << "prompt: " << prompt;
    ++lines;
  }
  EXPECT_GT(lines, 0);
}

// run.c prints decode(prev, next) for every token after BOS; the golden
// stdout is exactly that (up to the BOS that ends a story).
TEST_F(TokenizerTest, GoldenOutputDecodes) {
  std::ifstream in(kGoldenPath);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json g = nlohmann::json::parse(line);
    std::vector<int> ids = g["prompt_ids"].get<std::vector<int>>();
    for (int id : g["output_ids"]) ids.push_back(id);
    if (g["stopped_on_bos"].get<bool>()) ids.pop_back();
    EXPECT_EQ(tok512_->Decode(absl::MakeConstSpan(ids).subspan(1), ids.front()),
              g["stdout_text"].get<std::string>());
  }
}

TEST_F(TokenizerTest, EmptyText) {
  EXPECT_EQ(tok512_->Encode("", true), std::vector<int>{1});
  EXPECT_TRUE(tok512_->Encode("", false).empty());
  EXPECT_EQ(llama_->Encode("", false), std::vector<int>{});
}

TEST_F(TokenizerTest, KnownLlama2Encoding) {
  // Well-known Llama 2 ids: "▁Hello" 15043, "▁world" 3186.
  EXPECT_EQ(llama_->Encode("Hello world", true), (std::vector<int>{1, 15043, 3186}));
}

TEST_F(TokenizerTest, RoundTripsAsciiAndUtf8) {
  const std::vector<std::string> texts = {
      "Once upon a time, there was a little girl named Lily.",
      " leading space",
      "  two leading spaces and trailing  ",
      "line one\nline two\n\n\ttabbed",
      "caf\xC3\xA9 na\xC3\xAFve \xC3\xBC\x62\x65r",                 // accents
      "\xE4\xB8\xAD\xE6\x96\x87\xE6\xB5\x8B\xE8\xAF\x95",           // CJK
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x9A\x80 end",                 // 4-byte
      "<0x41> <s> </s> <unk>",                                       // piece lookalikes
      "x",
      " ",
  };
  for (const Tokenizer* tok : {tok512_, llama_}) {
    for (const std::string& text : texts) {
      EXPECT_EQ(RoundTrip(*tok, text), text) << "vocab " << tok->vocab_size();
    }
  }
}

TEST_F(TokenizerTest, MultibyteUsesByteFallbackInSmallVocab) {
  // tok512 has no CJK pieces: each of the 3 bytes of U+4E2D is a byte token.
  const std::vector<int> ids = tok512_->Encode("\xE4\xB8\xAD", false);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids[1], 0xE4 + 3);
  EXPECT_EQ(ids[2], 0xB8 + 3);
  EXPECT_EQ(ids[3], 0xAD + 3);
}

// Random text heavy in what exercises the merge order: vocabulary pieces
// glued together, spaces, newlines, multi-byte and malformed UTF-8.
std::string RandomText(std::mt19937& rng, const std::vector<std::string>& vocab, size_t size) {
  static const std::vector<std::string> kBits = {
      " ", "  ", "\n", "\n\n", "the", " and", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80",
      "\x80", "\x80\x80\x80\x80\x80", "\xC3", "\xF0\x9F", "<0x", "<s>", ".", ",", "'", "0x41"};
  std::string out;
  while (out.size() < size) {
    const int kind = rng() % 5;
    if (kind == 4) {
      // Runs of a char whose doubling is a piece ("lll", "   "): overlapping
      // equal-score pairs, where only the leftmost-first rule decides.
      static constexpr char kRunChars[] = "lpo .-/=*:)e";
      out.append(2 + rng() % 5, kRunChars[rng() % (sizeof(kRunChars) - 1)]);
    } else if (kind < 2) {
      // Skip control pieces and byte tokens: they hold NUL-free text too,
      // but add nothing beyond the lookalikes in kBits.
      const std::string& piece = vocab[259 + rng() % (vocab.size() - 259)];
      out += piece;
    } else if (kind == 2) {
      out += kBits[rng() % kBits.size()];
    } else {
      out.push_back(static_cast<char>('a' + rng() % 26));
    }
  }
  return out;
}

void ExpectMatchesNaive(const Tokenizer& tok, const NaiveLlama2c& naive, int count,
                        size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int i = 0; i < count; ++i) {
    const std::string text = RandomText(rng, naive.vocab(), 1 + rng() % size);
    const bool bos = rng() % 2;
    ASSERT_EQ(tok.Encode(text, bos), naive.Encode(text, bos)) << "text: " << text;
  }
}

TEST_F(TokenizerTest, MatchesNaiveLlama2cTok512) {
  const NaiveLlama2c naive(kTok512Path, 512);
  ExpectMatchesNaive(*tok512_, naive, 300, 200, 1234);
  ExpectMatchesNaive(*tok512_, naive, 1, 1, 99);  // shortest input
  std::mt19937 rng(7);
  const std::string big = RandomText(rng, naive.vocab(), 10000);
  EXPECT_EQ(tok512_->Encode(big, true), naive.Encode(big, true));
}

TEST_F(TokenizerTest, MatchesNaiveLlama2cLlama) {
  const NaiveLlama2c naive(kLlamaPath, 32000);
  ExpectMatchesNaive(*llama_, naive, 200, 200, 4321);
  std::mt19937 rng(8);
  const std::string big = RandomText(rng, naive.vocab(), 2000);
  EXPECT_EQ(llama_->Encode(big, false), naive.Encode(big, false));
}

TEST_F(TokenizerTest, LongInputIsNotQuadratic) {
  // A quadratic merge loop needs minutes here; the heap takes milliseconds.
  std::string text;
  while (text.size() < 400000) text += "The quick brown fox jumps over the lazy dog. \xE4\xB8\xAD ";
  const std::vector<int> ids = llama_->Encode(text, true);
  EXPECT_EQ(RoundTrip(*llama_, text), text);
  EXPECT_LT(ids.size(), text.size() / 2);
}

TEST_F(TokenizerTest, DecodeTokenBytes) {
  EXPECT_EQ(tok512_->DecodeToken(5, 13), "\n");
  const std::string_view nul = tok512_->DecodeToken(5, 3);
  ASSERT_EQ(nul.size(), 1u);
  EXPECT_EQ(nul[0], '\0');
  EXPECT_EQ(llama_->DecodeToken(1, 0xFF + 3), "\xFF");
  EXPECT_EQ(llama_->DecodeToken(-1, 0x41 + 3), "A");
}

TEST_F(TokenizerTest, DecodeTokenDropsLeadingSpaceOnlyAfterBos) {
  ASSERT_EQ(tok512_->Piece(259), " t");
  EXPECT_EQ(tok512_->DecodeToken(Llama2cTokenizer::kBosId, 259), "t");
  EXPECT_EQ(tok512_->DecodeToken(-1, 259), " t");
  EXPECT_EQ(tok512_->DecodeToken(Llama2cTokenizer::kEosId, 259), " t");
  EXPECT_EQ(tok512_->DecodeToken(260, 259), " t");
  EXPECT_EQ(tok512_->DecodeToken(Llama2cTokenizer::kBosId, 260), "he");
  EXPECT_EQ(tok512_->Decode(std::vector<int>{259, 259}, Llama2cTokenizer::kBosId), "t t");
  // BOS and EOS have no text, but the rule still applies after them.
  EXPECT_EQ(tok512_->Decode(std::vector<int>{259, 1, 259, 2}), " tt");
}

TEST_F(TokenizerTest, DecodeTokenOutOfRangeIsEmpty) {
  EXPECT_EQ(tok512_->DecodeToken(1, -1), "");
  EXPECT_EQ(tok512_->DecodeToken(1, 512), "");
  EXPECT_EQ(tok512_->DecodeToken(1, 31999), "");
  EXPECT_EQ(llama_->DecodeToken(1, 32000), "");
  EXPECT_EQ(tok512_->Decode(std::vector<int>{259, 600, 260}), " the");
}

// ---- Malformed files ----

void ExpectError(const absl::StatusOr<Llama2cTokenizer>& tok, absl::StatusCode code,
                 const std::string& path, const std::string& fragment) {
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), code) << tok.status();
  EXPECT_NE(tok.status().message().find(path), std::string_view::npos) << tok.status();
  EXPECT_NE(tok.status().message().find(fragment), std::string_view::npos) << tok.status();
}

TEST(TokenizerLoadTest, MissingFile) {
  const std::string path = ::testing::TempDir() + "/no_such_tokenizer.bin";
  ExpectError(Llama2cTokenizer::Load(path, 512), absl::StatusCode::kNotFound, path, "no such");
}

TEST(TokenizerLoadTest, DirectoryIsNotATokenizer) {
  const std::string path = ::testing::TempDir();
  ExpectError(Llama2cTokenizer::Load(path, 512), absl::StatusCode::kInvalidArgument, path,
              "regular file");
}

TEST(TokenizerLoadTest, Truncated) {
  const std::string full = ReadFile(kTok512Path);
  ASSERT_EQ(full.size(), 6227u);
  for (size_t size : {size_t{0}, size_t{3}, size_t{4}, size_t{10}, size_t{12}, size_t{100},
                      full.size() / 2, full.size() - 1}) {
    const std::string path = WriteTemp("truncated_" + std::to_string(size), full.substr(0, size));
    ExpectError(Llama2cTokenizer::Load(path, 512), absl::StatusCode::kInvalidArgument, path,
                "truncated");
  }
}

TEST(TokenizerLoadTest, VocabMismatch) {
  ExpectError(Llama2cTokenizer::Load(kTok512Path, 511), absl::StatusCode::kInvalidArgument,
              kTok512Path, "tokenizer has more than 511 tokens; the model's vocabulary is 511");
  ExpectError(Llama2cTokenizer::Load(kTok512Path, 513), absl::StatusCode::kInvalidArgument,
              kTok512Path, "truncated");
  ExpectError(Llama2cTokenizer::Load(kLlamaPath, 512), absl::StatusCode::kInvalidArgument,
              kLlamaPath, "more than 512 tokens");
}

TEST(TokenizerLoadTest, BadVocabSize) {
  for (int vocab : {0, -1, 2, (1 << 22) + 1}) {
    ExpectError(Llama2cTokenizer::Load(kTok512Path, vocab), absl::StatusCode::kInvalidArgument,
                kTok512Path, "vocab_size");
  }
}

// A 3-token file whose last token has length `len` (and no bytes after it).
std::string FileWithLength(int32_t max_len, int32_t len) {
  std::string s;
  Append(&s, max_len);
  for (const char* piece : {"<unk>", "<s>"}) {
    Append(&s, 0.0f);
    Append(&s, static_cast<int32_t>(std::strlen(piece)));
    s += piece;
  }
  Append(&s, 0.0f);
  Append(&s, len);
  return s;
}

TEST(TokenizerLoadTest, AbsurdLengths) {
  struct Case {
    const char* name;
    int32_t max_len, len;
    const char* fragment;
  };
  for (const Case& c : {Case{"negative", 8, -5, "length -5"},
                        Case{"huge", 8, 0x7fffffff, "length 2147483647"},
                        Case{"over_max", 8, 9, "length 9"},
                        Case{"over_hard_limit", 1 << 30, 5000, "length 5000"},
                        Case{"negative_max", -1, 3, "max_token_length -1"}}) {
    const std::string path = WriteTemp(c.name, FileWithLength(c.max_len, c.len));
    ExpectError(Llama2cTokenizer::Load(path, 3), absl::StatusCode::kInvalidArgument, path,
                c.fragment);
  }
}

TEST(TokenizerLoadTest, GarbageBytes) {
  std::mt19937 rng(42);
  for (int i = 0; i < 50; ++i) {
    std::string bytes(rng() % 300, '\0');
    for (char& b : bytes) b = static_cast<char>(rng());
    const std::string path = WriteTemp("garbage", bytes);
    EXPECT_FALSE(Llama2cTokenizer::Load(path, 512).ok());
  }
}

std::string FileWithPieces(int32_t max_len, const std::vector<std::string>& pieces) {
  std::string s;
  Append(&s, max_len);
  for (const std::string& piece : pieces) {
    Append(&s, 0.0f);
    Append(&s, static_cast<int32_t>(piece.size()));
    s += piece;
  }
  return s;
}

TEST(TokenizerLoadTest, SmallValidFile) {
  const std::string path =
      WriteTemp("small", FileWithPieces(7, {"<unk>", "<s>", "</s>", " ", "a", " a", " <0x41>"}));
  auto tok = Llama2cTokenizer::Load(path, 7);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->Encode("a", true), (std::vector<int>{1, 5}));
  // No byte tokens in a 7-token vocabulary: unknown bytes become <unk>.
  EXPECT_EQ(tok->Encode("ab", false), (std::vector<int>{5, 0}));
  // llama2.c strips the space after BOS first, then reads a byte piece.
  EXPECT_EQ(tok->DecodeToken(Llama2cTokenizer::kBosId, 6), "A");
  EXPECT_EQ(tok->DecodeToken(0, 6), " <0x41>");
}

TEST(TokenizerLoadTest, NoDummyPrefixWithoutSpacePiece) {
  const std::string path =
      WriteTemp("nospace", FileWithPieces(5, {"<unk>", "<s>", "</s>", "a", "aa"}));
  auto tok = Llama2cTokenizer::Load(path, 5);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->Encode("aaa", true), (std::vector<int>{1, 4, 3}));
}

}  // namespace
}  // namespace inferd

#include "engine/tokenizer/incremental_detokenizer.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/llama2c_tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"

namespace inferd {
namespace {

constexpr char kFffd[] = "\xEF\xBF\xBD";

// Both llama2.c tokenizers put <0x00>..<0xFF> right after <unk>, <s>, </s>.
int ByteToken(uint8_t byte) { return byte + 3; }

class IncrementalDetokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto small = Llama2cTokenizer::Load(
        INFERD_SOURCE_DIR "/models/stories260K/tok512.bin", 512);
    ASSERT_TRUE(small.ok()) << small.status();
    tok512_ = new Llama2cTokenizer(*std::move(small));
    auto llama = Llama2cTokenizer::Load(
        INFERD_SOURCE_DIR "/models/llama2-tokenizer/tokenizer.bin", 32000);
    ASSERT_TRUE(llama.ok()) << llama.status();
    llama_ = new Llama2cTokenizer(*std::move(llama));
  }
  static void TearDownTestSuite() {
    delete tok512_;
    delete llama_;
  }

  // Feeds `ids` one by one; checks every delta is valid UTF-8 and returns
  // all deltas plus Flush.
  static std::string Stream(const Tokenizer& tok, const std::vector<int>& ids,
                            int prev) {
    IncrementalDetokenizer detok(&tok, prev);
    std::string out;
    for (int id : ids) {
      const std::string delta = detok.Append(id);
      EXPECT_TRUE(IsValidUtf8(delta)) << "token " << id;
      out += delta;
    }
    out += detok.Flush();
    return out;
  }

  static std::string Bytes(const std::string& bytes) {
    std::vector<int> ids;
    for (char c : bytes) ids.push_back(ByteToken(static_cast<uint8_t>(c)));
    return Stream(*tok512_, ids, /*prev=*/ByteToken('x'));
  }

  static Llama2cTokenizer* tok512_;
  static Llama2cTokenizer* llama_;
};

Llama2cTokenizer* IncrementalDetokenizerTest::tok512_ = nullptr;
Llama2cTokenizer* IncrementalDetokenizerTest::llama_ = nullptr;

TEST_F(IncrementalDetokenizerTest, MultibyteTextMatchesDecode) {
  const std::vector<std::string> texts = {
      "Once upon a time", "café au lait", "中文", "smile 😀!",
      "naïve 中文 😀 mixed é-ü, ok", "😀😀中é"};
  for (const Tokenizer* tok : {tok512_, llama_}) {
    for (const std::string& text : texts) {
      for (bool bos : {false, true}) {
        const std::vector<int> all = tok->Encode(text, bos);
        const int prev = bos ? Llama2cTokenizer::kBosId : -1;
        const std::vector<int> ids(all.begin() + (bos ? 1 : 0), all.end());
        const std::string expected = tok->Decode(ids, prev);
        ASSERT_TRUE(IsValidUtf8(expected)) << text;
        EXPECT_EQ(Stream(*tok, ids, prev), expected) << text;
      }
    }
  }
}

TEST_F(IncrementalDetokenizerTest, HoldsPartialCharacterUntilComplete) {
  // tok512 has no piece for these, so each arrives as byte tokens.
  const std::vector<int> ids = tok512_->Encode("中😀", false);
  IncrementalDetokenizer detok(tok512_, Llama2cTokenizer::kBosId);
  std::vector<std::string> deltas;
  for (int id : ids) deltas.push_back(detok.Append(id));
  ASSERT_GE(deltas.size(), 7u);  // E4 B8 AD F0 9F 98 80, maybe a space first
  const size_t n = deltas.size();
  EXPECT_EQ(deltas[n - 7], "");
  EXPECT_EQ(deltas[n - 6], "");
  EXPECT_EQ(deltas[n - 5], "中");
  EXPECT_EQ(deltas[n - 4], "");
  EXPECT_EQ(deltas[n - 3], "");
  EXPECT_EQ(deltas[n - 2], "");
  EXPECT_EQ(deltas[n - 1], "😀");
  EXPECT_EQ(detok.Flush(), "");
}

TEST_F(IncrementalDetokenizerTest, DropsLeadingSpaceAfterBos) {
  const std::vector<int> ids = tok512_->Encode("Once upon", true);
  ASSERT_EQ(ids[0], Llama2cTokenizer::kBosId);
  ASSERT_EQ(tok512_->Piece(ids[1]), " Once");
  IncrementalDetokenizer detok(tok512_, Llama2cTokenizer::kBosId);
  EXPECT_EQ(detok.Append(ids[1]), "Once");
  // Not after BOS: the space stays.
  IncrementalDetokenizer mid(tok512_, ids[1]);
  EXPECT_EQ(mid.Append(ids[1]), " Once");
}

TEST_F(IncrementalDetokenizerTest, InvalidBytesBecomeReplacement) {
  const std::string r = kFffd;
  // Lone continuation byte.
  EXPECT_EQ(Bytes("a\x80z"), "a" + r + "z");
  // Truncated 3-byte character then ASCII: one U+FFFD for the cut sequence.
  EXPECT_EQ(Bytes("a\xE4\xB8z"), "a" + r + "z");
  EXPECT_EQ(Bytes("\xF0\x9F\x98x"), r + "x");
  // Overlong forms: every byte is bad on its own.
  EXPECT_EQ(Bytes("\xC0\xAF"), r + r);
  EXPECT_EQ(Bytes("\xE0\x80\xAF"), r + r + r);
  EXPECT_EQ(Bytes("\xF0\x8F\xBF\xBF"), r + r + r + r);
  // Surrogate U+D800 and above U+10FFFF.
  EXPECT_EQ(Bytes("x\xED\xA0\x80y"), "x" + r + r + r + "y");
  EXPECT_EQ(Bytes("\xF4\x90\x80\x80"), r + r + r + r);
  EXPECT_EQ(Bytes("\xF5\xFF"), r + r);
  // Valid neighbours, including the largest code point, stay intact.
  EXPECT_EQ(Bytes("\xC3\xA9\x80\xF4\x8F\xBF\xBF"),
            "\xC3\xA9" + r + "\xF4\x8F\xBF\xBF");
}

TEST_F(IncrementalDetokenizerTest, ReplacesAsSoonAsKnownBad) {
  IncrementalDetokenizer detok(tok512_, ByteToken('x'));
  EXPECT_EQ(detok.Append(ByteToken(0xE0)), "");  // could still be valid
  // E0 80 can never be valid: both bytes are replaced right away.
  EXPECT_EQ(detok.Append(ByteToken(0x80)), std::string(kFffd) + kFffd);
  EXPECT_EQ(detok.Append(ByteToken(0xED)), "");
  EXPECT_EQ(detok.Append(ByteToken(0x9F)), "");  // ED 9F: U+D7C0.. is valid
  EXPECT_EQ(detok.Append(ByteToken(0xBF)), "\xED\x9F\xBF");
  EXPECT_EQ(detok.Flush(), "");
}

TEST_F(IncrementalDetokenizerTest, FlushReplacesHeldBytes) {
  IncrementalDetokenizer detok(tok512_, ByteToken('x'));
  EXPECT_EQ(detok.Append(ByteToken('a')), "a");
  EXPECT_EQ(detok.Append(ByteToken(0xF0)), "");
  EXPECT_EQ(detok.Append(ByteToken(0x9F)), "");
  EXPECT_EQ(detok.Append(ByteToken(0x98)), "");
  EXPECT_EQ(detok.Flush(), kFffd);
  EXPECT_EQ(detok.Flush(), "");
}

TEST_F(IncrementalDetokenizerTest, RandomBytesAlwaysGiveValidUtf8) {
  // Bytes biased towards the interesting ranges, mixed with whole pieces.
  std::mt19937 rng(42);
  const uint8_t kBytes[] = {'a',  ' ',  0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                            0xC0, 0xC2, 0xDF, 0xE0, 0xE4, 0xED, 0xEF, 0xF0,
                            0xF3, 0xF4, 0xF5, 0xFF};
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int> ids;
    const int n = 1 + rng() % 12;
    for (int i = 0; i < n; ++i) {
      ids.push_back(rng() % 5 == 0 ? 3 + 256 + rng() % 200  // a merged piece
                                   : ByteToken(kBytes[rng() % 20]));
    }
    const std::string decoded = tok512_->Decode(ids, 0);
    const std::string streamed = Stream(*tok512_, ids, 0);
    EXPECT_TRUE(IsValidUtf8(streamed));
    if (IsValidUtf8(decoded)) {
      EXPECT_EQ(streamed, decoded);
    }
  }
}

}  // namespace
}  // namespace inferd

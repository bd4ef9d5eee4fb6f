// The tokenizer.model path (libsentencepiece) against llama2.c's encoder on
// the same vocabulary (tokenizer.bin), against libsentencepiece's own
// DecodeIds, and against ids published for Llama 2.
#include "engine/tokenizer/sentencepiece_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/llama2c_tokenizer.h"
#include "engine/tokenizer/sentencepiece_library.h"
#include "gtest/gtest.h"

namespace inferd {
namespace {

const std::string kModelPath = std::string(INFERD_SHARED_DIR) + "/models/llama2-tokenizer/tokenizer.model";
const std::string kBinPath = std::string(INFERD_SOURCE_DIR) + "/models/llama2-tokenizer/tokenizer.bin";

std::vector<std::string> Corpus() {
  std::ifstream in(std::string(INFERD_SOURCE_DIR) + "/tests/tokenizer_reference/corpus.json");
  return nlohmann::json::parse(in).get<std::vector<std::string>>();
}

class SentencePieceTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadSentencePieceModel(kModelPath);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = *std::move(tok);
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(SentencePieceTokenizerTest, Llama2Vocabulary) {
  EXPECT_EQ(tok_->vocab_size(), 32000);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_TRUE(tok_->AddsBosByDefault());
  EXPECT_TRUE(tok_->IsSpecial(1));
  EXPECT_FALSE(tok_->IsSpecial(15043));
  EXPECT_EQ(tok_->Piece(15043), "\xE2\x96\x81Hello");
  // Llama 2's tokenizer, as published: "Hello world" -> <s> ▁Hello ▁world.
  EXPECT_EQ(tok_->Encode("Hello world", true), (std::vector<int>{1, 15043, 3186}));
}

// llama2.c's encoder is SentencePiece BPE by score over the same vocabulary:
// the ids agree on every text without special-token text (which only the
// tokenizer.model path parses).
TEST_F(SentencePieceTokenizerTest, AgreesWithLlama2cEncoder) {
  absl::StatusOr<Llama2cTokenizer> llama2c = Llama2cTokenizer::Load(kBinPath, 32000);
  ASSERT_TRUE(llama2c.ok()) << llama2c.status();
  int compared = 0;
  for (const std::string& text : Corpus()) {
    if (text.find("<s>") != std::string::npos || text.find("</s>") != std::string::npos) continue;
    EXPECT_EQ(tok_->Encode(text, true), llama2c->Encode(text, true)) << "\"" << text << "\"";
    ++compared;
  }
  EXPECT_GE(compared, 40);
}

TEST_F(SentencePieceTokenizerTest, DecodeMatchesLibrary) {
  std::string error;
  std::unique_ptr<SentencePieceLibrary> library = SentencePieceLibrary::Load(kModelPath, &error);
  ASSERT_NE(library, nullptr) << error;
  for (const std::string& text : Corpus()) {
    const std::vector<int> ids = tok_->Encode(text, true);
    IncrementalDetokenizer detok(tok_.get(), -1);
    std::string streamed;
    for (int id : ids) streamed += detok.Append(id);
    streamed += detok.Flush();
    EXPECT_EQ(streamed, library->DecodeIds(ids)) << "\"" << text << "\"";
  }
}

TEST_F(SentencePieceTokenizerTest, ParseSpecialIsAnOption) {
  EXPECT_EQ(tok_->Encode("<s>Hi", false), (std::vector<int>{1, tok_->Encode("Hi", false)[0]}));
  const std::vector<int> plain = tok_->Encode("<s>Hi", {.parse_special = false});
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_GT(plain.size(), 2u);
}

TEST(SentencePieceTokenizer, NotAModelIsAnError) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadSentencePieceModel(kBinPath);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find(kBinPath), std::string::npos) << tok.status();
}

}  // namespace
}  // namespace inferd

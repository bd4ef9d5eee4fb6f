// How a text prompt becomes ids: add_bos follows the tokenizer unless the
// request sets it, and tokenizer_parse_special decides whether special-token
// text becomes the special token.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "engine/tokenizer/hf_tokenizer.h"
#include "gtest/gtest.h"
#include "server/request_validation.h"

namespace inferd {
namespace {

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  const std::string dir = std::string(INFERD_SHARED_DIR) + "/models/tokenizers/" + name;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      LoadHfTokenizer(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

std::vector<int> PromptIds(const Tokenizer& tok, const v1::GenerateRequest& request, bool parse_special) {
  ModelConfig model;
  model.vocab_size = tok.vocab_size();
  model.max_seq_len = 4096;
  RequestLimits limits;
  limits.parse_special_tokens = parse_special;
  absl::StatusOr<Request> out = ToEngineRequest(request, model, tok, limits);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? out->prompt_ids : std::vector<int>{};
}

TEST(RequestTokenization, AddBosFollowsTheTokenizer) {
  // spm-bpe-32k: tokenizer_config add_bos_token true; Qwen3: no BOS.
  std::unique_ptr<Tokenizer> spm = Load("spm-bpe-32k");
  std::unique_ptr<Tokenizer> qwen = Load("qwen3");
  ASSERT_NE(spm, nullptr);
  ASSERT_NE(qwen, nullptr);
  v1::GenerateRequest request;
  request.set_text("Hello world");
  EXPECT_EQ(PromptIds(*spm, request, true), (std::vector<int>{1, 22557, 1526}));
  EXPECT_EQ(PromptIds(*qwen, request, true), qwen->Encode("Hello world", false));
  request.set_add_bos(false);
  EXPECT_EQ(PromptIds(*spm, request, true), (std::vector<int>{22557, 1526}));
}

TEST(RequestTokenization, ParseSpecialIsTheServerOption) {
  std::unique_ptr<Tokenizer> qwen = Load("qwen3");
  ASSERT_NE(qwen, nullptr);
  v1::GenerateRequest request;
  request.set_text("<|im_start|>user");
  const std::vector<int> parsed = PromptIds(*qwen, request, true);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed.front(), 151644);  // <|im_start|>
  const std::vector<int> plain = PromptIds(*qwen, request, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 151644), 0);
  EXPECT_EQ(qwen->Decode(plain), "<|im_start|>user");
}

}  // namespace
}  // namespace inferd

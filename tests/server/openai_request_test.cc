// OpenAI JSON bodies -> GenerateRequests: shapes, types, the HTTP-only
// fields, and the parameter names errors carry.
#include "server/chat_template/chat_template_loader.h"
#include "server/http/openai_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace inferd {
namespace {

using ::testing::HasSubstr;

const OpenAiLimits kLimits{.max_n = 8};

std::string ParamOfError(const absl::StatusOr<OpenAiRequest>& request) {
  EXPECT_FALSE(request.ok());
  if (request.ok()) return "";
  EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument) << request.status();
  return ParamOf(request.status());
}

TEST(OpenAiRequestTest, CompletionFieldsReachTheProto) {
  absl::StatusOr<OpenAiRequest> r = ParseCompletionRequest(
      R"({"model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": -1,
          "min_p": 0.1, "repetition_penalty": 1.2, "seed": -1, "stop": "x", "stop_token_ids": [5],
          "ignore_eos": true, "min_tokens": 2, "priority": 3, "n": 2, "logprobs": 0, "stream": true,
          "stream_options": {"include_usage": true}, "unknown": {"a": [1]}})",
      kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->prompts.size(), 1u);
  const v1::GenerateRequest& p = r->prompts[0];
  EXPECT_EQ(p.model(), "m");
  EXPECT_EQ(p.text(), "hi");
  EXPECT_EQ(p.stopping().max_tokens(), 7u);
  EXPECT_FLOAT_EQ(p.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(p.sampling().top_p(), 0.9f);
  EXPECT_EQ(p.sampling().top_k(), 0);
  EXPECT_FLOAT_EQ(p.sampling().min_p(), 0.1f);
  EXPECT_FLOAT_EQ(p.sampling().repetition_penalty(), 1.2f);
  EXPECT_EQ(p.sampling().seed(), ~uint64_t{0});
  EXPECT_EQ(p.stopping().stop(0), "x");
  EXPECT_EQ(p.stopping().stop_token_ids(0), 5);
  EXPECT_TRUE(p.stopping().ignore_eos());
  EXPECT_EQ(p.stopping().min_tokens(), 2u);
  EXPECT_EQ(p.priority(), 3);
  EXPECT_EQ(p.logprobs(), 1);  // the engine needs one for the sampled token's logprob
  EXPECT_EQ(r->top_logprobs, 0);
  EXPECT_EQ(r->n, 2);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
}

TEST(OpenAiRequestTest, PromptForms) {
  absl::StatusOr<OpenAiRequest> ids = ParseCompletionRequest(R"({"prompt": [1, 2, 3]})", kLimits);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->prompts[0].token_ids().ids_size(), 3);
  absl::StatusOr<OpenAiRequest> list = ParseCompletionRequest(R"({"prompt": ["a", [4, 5]], "n": 3})", kLimits);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->prompts.size(), 2u);
  EXPECT_EQ(list->num_choices(), 6);
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({"prompt": ["a", "b", "c"], "n": 3})", kLimits)), "n");
}

TEST(OpenAiRequestTest, BadBodiesNameTheParameter) {
  EXPECT_THAT(ParseCompletionRequest("{", kLimits).status().message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(ParseCompletionRequest("[]", kLimits).status().message(), HasSubstr("JSON object"));
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({})", kLimits)), "prompt");
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({"prompt": "x", "temperature": "1"})", kLimits)), "temperature");
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({"prompt": "x", "max_tokens": 1.5})", kLimits)), "max_tokens");
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({"prompt": "x", "stop": [1]})", kLimits)), "stop");
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({"prompt": "x", "echo": true})", kLimits)), "echo");
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({"prompt": "x", "stream_options": {}})", kLimits)),
            "stream_options");
  EXPECT_EQ(ParamOfError(ParseCompletionRequest(R"({"prompt": [true]})", kLimits)), "prompt");
  // null is "not set", as OpenAI's clients send it.
  EXPECT_TRUE(ParseCompletionRequest(R"({"prompt": "x", "temperature": null, "stop": null})", kLimits).ok());
}

TEST(OpenAiRequestTest, ChatCarriesMessagesToTheSharedTemplatePath) {
  absl::StatusOr<OpenAiRequest> r = ParseChatRequest(
      R"({"messages": [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                       {"role": "assistant", "content": null}],
          "max_tokens": 9, "max_completion_tokens": 4, "logprobs": true, "top_logprobs": 3,
          "add_generation_prompt": false})",
      kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->prompts[0].has_messages());
  const v1::ChatMessages& m = r->prompts[0].messages();
  ASSERT_EQ(m.messages_size(), 3);
  EXPECT_EQ(m.messages(0).role(), "system");
  EXPECT_EQ(m.messages(0).content(), "Be brief.");
  EXPECT_EQ(m.messages(1).content(), "Hi\nthere");  // text parts joined, as vLLM does
  EXPECT_EQ(m.messages(2).role(), "assistant");
  EXPECT_EQ(m.messages(2).content(), "");
  EXPECT_FALSE(r->prompts[0].add_generation_prompt());
  EXPECT_EQ(r->prompts[0].stopping().max_tokens(), 4u);  // max_completion_tokens wins
  EXPECT_EQ(r->top_logprobs, 3);
  EXPECT_EQ(r->prompts[0].logprobs(), 3);
  EXPECT_EQ(ParamOfError(ParseChatRequest(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 1})",
                                          kLimits)),
            "top_logprobs");
  EXPECT_EQ(ParamOfError(ParseChatRequest(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
                                          kLimits)),
            "messages");
  EXPECT_EQ(ParamOfError(ParseChatRequest(R"({"messages": []})", kLimits)), "messages");
}

TEST(OpenAiRequestTest, BuiltinChatMlTemplateRendersChatMl) {
  absl::StatusOr<std::optional<ChatTemplate>> chatml = LoadChatTemplate("dummy:tiny", "", "chatml");
  ASSERT_TRUE(chatml.ok()) << chatml.status();
  ASSERT_TRUE(chatml->has_value());
  ChatMessage system, user;
  system.role = "system";
  system.content = "Be brief.";
  user.role = "user";
  user.content = "Hi";
  absl::StatusOr<std::string> text = RenderChat(**chatml, {system, user}, /*add_generation_prompt=*/true);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(OpenAiRequestTest, ValidationMessagesUseOpenAiNames) {
  const absl::Status status = ToOpenAiNames(absl::InvalidArgumentError("sampling.top_p: must be in (0, 1]"),
                                            ApiKind::kCompletion);
  EXPECT_EQ(status.message(), "top_p: must be in (0, 1]");
  EXPECT_EQ(ParamOf(status), "top_p");
  EXPECT_EQ(ParamOf(ToOpenAiNames(absl::InvalidArgumentError("stopping.stop[2]: empty"), ApiKind::kChat)), "stop");
  EXPECT_EQ(ParamOf(ToOpenAiNames(absl::InvalidArgumentError("text: the prompt is empty"), ApiKind::kChat)),
            "messages");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("the body is not valid JSON (UTF-8)")), "");
}

}  // namespace
}  // namespace inferd

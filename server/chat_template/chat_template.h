// A model's chat template and the one function both protocols (gRPC
// `messages`, HTTP /v1/chat/completions) render conversations with. It
// passes what Hugging Face's apply_chat_template passes: `messages`,
// `add_generation_prompt`, the special tokens of tokenizer_config.json
// (`bos_token`, `eos_token`, ...) and `tools` (none unless given).
//
// This folder depends on neither gRPC nor the engine; turning the text into
// token ids is server/chat_prompt.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/chat_template/template.h"

namespace inferd {

// One message of a conversation.
struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ... (the template decides which it accepts)
  std::string content;
  // OpenAI's list-of-text-parts content ([{"type": "text", "text": ...}]),
  // when the client sent that form; `content` is then ignored.
  std::optional<std::vector<std::string>> text_parts;
};

// The special-token strings a template sees as variables; an absent one is
// undefined in the template, as in transformers.
struct SpecialTokens {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
};

class ChatTemplate {
 public:
  // Parses `source` (Jinja); `origin` names where it came from in messages
  // ("models/x/tokenizer_config.json"). InvalidArgument, with the line and
  // column, for a template outside the supported subset.
  static absl::StatusOr<ChatTemplate> Create(std::string source, std::string origin, SpecialTokens special_tokens);

  const std::string& source() const { return source_; }
  const std::string& origin() const { return origin_; }
  const SpecialTokens& special_tokens() const { return special_tokens_; }
  void set_special_tokens(SpecialTokens tokens) { special_tokens_ = std::move(tokens); }

  // Whether the template iterates over a message's content (handles the
  // list-of-parts form itself); otherwise text parts are joined with "\n"
  // before rendering, as vLLM does for string-only templates.
  bool accepts_content_parts() const { return accepts_content_parts_; }

  const jinja::Template& jinja_template() const { return template_; }

 private:
  ChatTemplate(std::string source, std::string origin, SpecialTokens special_tokens, jinja::Template parsed);

  std::string source_;
  std::string origin_;
  SpecialTokens special_tokens_;
  jinja::Template template_;
  bool accepts_content_parts_ = false;
};

// The prompt text for `messages`. InvalidArgument naming the message for an
// empty conversation or role, and for a template error at render time
// (raise_exception's message included), e.g.
// "chat template: line 3, column 9: raise_exception: Conversation roles must alternate ...".
// `tools`, when given, is the list of tool (function) schemas.
absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat_template, absl::Span<const ChatMessage> messages,
                                       bool add_generation_prompt,
                                       const std::optional<nlohmann::ordered_json>& tools = std::nullopt);

// The variables RenderChat passes to the template (for tests and tools that
// render with extra variables).
jinja::Dict ChatContext(const ChatTemplate& chat_template, absl::Span<const ChatMessage> messages,
                        bool add_generation_prompt, const std::optional<nlohmann::ordered_json>& tools);

}  // namespace inferd

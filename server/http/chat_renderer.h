// Chat messages -> prompt text. The HTTP chat endpoint renders every
// conversation through RenderChat and one ChatRenderer, chosen when the
// server starts: a model's own chat template (the Jinja-subset interpreter
// in server/chat_template/ plugs in behind this interface), or the builtin
// ChatML format (`--chat-template chatml`) for models that have none.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace inferd {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant" (what the template knows)
  std::string content;  // text parts already joined
};

class ChatRenderer {
 public:
  virtual ~ChatRenderer() = default;
  // The prompt for `messages`; with `add_generation_prompt`, ending where
  // the assistant's next reply begins. InvalidArgument for a conversation
  // the template refuses.
  virtual absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                             bool add_generation_prompt) const = 0;
};

// ChatML, as OpenAI and Qwen write it:
//   <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
std::unique_ptr<ChatRenderer> MakeChatMlRenderer();

// The renderer that `--chat-template NAME` names ("" = none, "chatml");
// InvalidArgument for an unknown name.
absl::StatusOr<std::unique_ptr<ChatRenderer>> MakeBuiltinChatRenderer(const std::string& name);

// The single entry of the chat path: renders with `renderer`, or fails with
// FailedPrecondition (HTTP 400) when the model has no chat template.
absl::StatusOr<std::string> RenderChat(const ChatRenderer* renderer, absl::Span<const ChatMessage> messages,
                                       bool add_generation_prompt);

}  // namespace inferd

#include "server/http/chat_renderer.h"

#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

class ChatMlRenderer final : public ChatRenderer {
 public:
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                     bool add_generation_prompt) const override {
    std::string prompt;
    for (size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      if (m.role != "system" && m.role != "user" && m.role != "assistant") {
        return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role: \"", m.role,
                                                       "\" is not one of system, user, assistant"));
      }
      absl::StrAppend(&prompt, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
    }
    if (add_generation_prompt) absl::StrAppend(&prompt, "<|im_start|>assistant\n");
    return prompt;
  }
};

}  // namespace

std::unique_ptr<ChatRenderer> MakeChatMlRenderer() { return std::make_unique<ChatMlRenderer>(); }

absl::StatusOr<std::unique_ptr<ChatRenderer>> MakeBuiltinChatRenderer(const std::string& name) {
  if (name.empty()) return std::unique_ptr<ChatRenderer>();
  if (name == "chatml") return MakeChatMlRenderer();
  return absl::InvalidArgumentError(absl::StrCat("chat template \"", name, "\": the builtin templates are: chatml"));
}

absl::StatusOr<std::string> RenderChat(const ChatRenderer* renderer, absl::Span<const ChatMessage> messages,
                                       bool add_generation_prompt) {
  if (renderer == nullptr) {
    return absl::FailedPreconditionError(
        "this model has no chat template; use /v1/completions, or start the server with --chat-template chatml");
  }
  return renderer->Render(messages, add_generation_prompt);
}

}  // namespace inferd

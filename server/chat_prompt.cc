#include "server/chat_prompt.h"

#include <string_view>

#include "absl/strings/match.h"

namespace inferd {

absl::StatusOr<std::vector<int>> EncodeChatPrompt(const ChatTemplate* chat_template,
                                                  absl::Span<const ChatMessage> messages, bool add_generation_prompt,
                                                  const Tokenizer& tokenizer,
                                                  const std::optional<nlohmann::ordered_json>& tools) {
  if (chat_template == nullptr) {
    return absl::InvalidArgumentError(
        "messages: this model has no chat template (no chat_template in its tokenizer_config.json); start the "
        "server with --chat-template FILE, or send the prompt as text");
  }
  absl::StatusOr<std::string> text = RenderChat(*chat_template, messages, add_generation_prompt, tools);
  if (!text.ok()) return text.status();
  const std::optional<std::string>& bos = chat_template->special_tokens().bos_token;
  if (bos.has_value() && !bos->empty() && absl::StartsWith(*text, *bos)) {
    return tokenizer.Encode(std::string_view(*text).substr(bos->size()), /*add_bos=*/true);
  }
  return tokenizer.Encode(*text, /*add_bos=*/false);
}

}  // namespace inferd

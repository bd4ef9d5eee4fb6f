// A conversation as prompt token ids: rendered with the model's chat
// template (server/chat_template/), then tokenized with exactly one BOS.
// Hugging Face tokenizes a rendered chat with add_special_tokens=False
// because templates write the BOS text themselves; tokenizers that cannot
// read special-token text (llama2.c's) would spell it out, so a leading BOS
// text is taken off and encoded as the BOS id instead. A template that
// writes no BOS gets none. Both protocols call this.
#pragma once

#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/chat_template/chat_template.h"

namespace inferd {

// InvalidArgument when the model has no chat template (`chat_template`
// null; the message says how to give it one), and for RenderChat's errors.
absl::StatusOr<std::vector<int>> EncodeChatPrompt(const ChatTemplate* chat_template,
                                                  absl::Span<const ChatMessage> messages, bool add_generation_prompt,
                                                  const Tokenizer& tokenizer,
                                                  const std::optional<nlohmann::ordered_json>& tools = std::nullopt);

}  // namespace inferd

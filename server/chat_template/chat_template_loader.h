// Finds a model's chat template when the model loads: `--chat-template
// FILE` (or the builtin `chatml`) if given, else the `chat_template` of the tokenizer_config.json
// beside the tokenizer (or the model), which may be a string or a list of
// {"name", "template"} (the one named "default" is used), else a
// chat_template.jinja file there. The special tokens come from the same
// tokenizer_config.json. Errors name the file, and for a template outside
// the supported subset, its line and column.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/chat_template/chat_template.h"

namespace inferd {

// `--chat-template chatml`: ChatML as OpenAI and Qwen write it, for models
// that ship no template.
inline constexpr char kChatMlTemplateName[] = "chatml";
inline constexpr char kChatMlTemplate[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// `model_path`: a model directory or a file in one (or a path that is
// neither, such as dummy:PRESET); `tokenizer_path`: the --tokenizer
// override or ""; `template_file`: --chat-template (a file or "chatml") or "". nullopt when the
// model has no chat template.
absl::StatusOr<std::optional<ChatTemplate>> LoadChatTemplate(const std::string& model_path,
                                                             const std::string& tokenizer_path,
                                                             const std::string& template_file);

}  // namespace inferd

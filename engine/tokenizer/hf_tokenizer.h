// tokenizer.json (Hugging Face tokenizers) as a Tokenizer.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& tokenizer_json_path,
                                                           const std::string& tokenizer_config_path /* "" if absent */);
absl::StatusOr<std::unique_ptr<Tokenizer>> HfTokenizerFromJson(const nlohmann::json& tokenizer_json,
                                                               const nlohmann::json& tokenizer_config /* null if absent */);

}  // namespace inferd

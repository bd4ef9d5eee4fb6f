// Hugging Face tokenizer.json (with tokenizer_config.json): the pipeline as
// Hugging Face names it — added tokens, normalizer, pre-tokenizer, BPE model,
// post-processor, decoder — for byte-level BPE (Llama 3, Qwen2/3, GPT-2) and
// SentencePiece-style BPE (Llama 2, Mistral). Special tokens decode to "".
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

// `tokenizer_config_path` is "" when there is none. Errors name the file and
// the JSON path of what is wrong or unsupported.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& tokenizer_json_path,
                                                           const std::string& tokenizer_config_path);

// The same from parsed documents (`tokenizer_config` null when absent), e.g.
// a tokenizer.json-shaped document made from GGUF metadata.
absl::StatusOr<std::unique_ptr<Tokenizer>> HfTokenizerFromJson(const nlohmann::json& tokenizer_json,
                                                               const nlohmann::json& tokenizer_config);

}  // namespace inferd

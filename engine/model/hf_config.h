// config.json (+ generation_config.json) of a Hugging Face Llama-family
// checkpoint as a ModelConfig: LlamaForCausalLM (Llama 2, 3, 3.1, 3.2),
// MistralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace inferd {

// `generation_config` may be null (no file). `max_model_len` > 0 caps the
// served context (and is what Mistral's sliding window is checked against).
// `where` names the directory in errors.
absl::StatusOr<ModelConfig> HfConfigFromJson(const nlohmann::json& config, const nlohmann::json& generation_config,
                                             int max_model_len, const std::string& where);

}  // namespace inferd

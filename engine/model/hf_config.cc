#include "engine/model/hf_config.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace inferd {
namespace {

constexpr const char* kArchitectures[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                          "Qwen3ForCausalLM"};

class Reader {
 public:
  Reader(const nlohmann::json& json, std::string where) : json_(json), where_(std::move(where)) {}

  absl::Status Int(const char* key, int& out, bool required) const {
    if (!json_.contains(key) || json_[key].is_null()) {
      return required ? absl::InvalidArgumentError(absl::StrCat(where_, ": missing \"", key, "\""))
                      : absl::OkStatus();
    }
    if (!json_[key].is_number_integer() || json_[key].get<int64_t>() < 0 ||
        json_[key].get<int64_t>() > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": \"", key, "\" must be a non-negative integer"));
    }
    out = json_[key].get<int>();
    return absl::OkStatus();
  }
  absl::Status Float(const char* key, float& out) const {
    if (!json_.contains(key) || json_[key].is_null()) return absl::OkStatus();
    if (!json_[key].is_number()) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": \"", key, "\" must be a number"));
    }
    out = json_[key].get<float>();
    return absl::OkStatus();
  }
  absl::Status Bool(const char* key, bool& out) const {
    if (!json_.contains(key) || json_[key].is_null()) return absl::OkStatus();
    if (!json_[key].is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": \"", key, "\" must be true or false"));
    }
    out = json_[key].get<bool>();
    return absl::OkStatus();
  }

 private:
  const nlohmann::json& json_;
  std::string where_;
};

#define RETURN_IF_ERROR_HF(expr)          \
  do {                                        \
    if (absl::Status s = (expr); !s.ok()) return s; \
  } while (0)

absl::Status ReadRopeScaling(const nlohmann::json& json, const std::string& where, RopeScaling& out) {
  if (!json.contains("rope_scaling") || json["rope_scaling"].is_null()) return absl::OkStatus();
  const nlohmann::json& rs = json["rope_scaling"];
  const std::string at = absl::StrCat(where, " rope_scaling");
  if (!rs.is_object()) return absl::InvalidArgumentError(absl::StrCat(at, ": must be an object or null"));
  // transformers reads "rope_type", and "type" from older configs.
  const char* type_key = rs.contains("rope_type") ? "rope_type" : "type";
  const std::string type = rs.contains(type_key) && rs[type_key].is_string() ? rs[type_key].get<std::string>() : "";
  Reader r(rs, at);
  if (type == "default") return absl::OkStatus();
  if (type == "linear") {
    out.type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    out.type = RopeScaling::Type::kLlama3;
    RETURN_IF_ERROR_HF(r.Float("low_freq_factor", out.low_freq_factor));
    RETURN_IF_ERROR_HF(r.Float("high_freq_factor", out.high_freq_factor));
    RETURN_IF_ERROR_HF(r.Int("original_max_position_embeddings", out.original_max_position_embeddings, true));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(at, ": type \"", type,
                                                   "\" is not supported (supported: linear, llama3)"));
  }
  if (!rs.contains("factor")) return absl::InvalidArgumentError(absl::StrCat(at, ": missing \"factor\""));
  RETURN_IF_ERROR_HF(r.Float("factor", out.factor));
  if (!(out.factor >= 1.0f)) return absl::InvalidArgumentError(absl::StrCat(at, ": factor must be >= 1"));
  return absl::OkStatus();
}

// eos_token_id as an int or a list of ints; `out` unchanged when absent.
absl::Status ReadEos(const nlohmann::json& json, const std::string& where, std::vector<int>& out) {
  if (!json.is_object() || !json.contains("eos_token_id") || json["eos_token_id"].is_null()) {
    return absl::OkStatus();
  }
  const nlohmann::json& eos = json["eos_token_id"];
  std::vector<int> ids;
  for (const nlohmann::json& id : eos.is_array() ? eos : nlohmann::json::array({eos})) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": eos_token_id must be a token id or a list of token ids"));
    }
    ids.push_back(id.get<int>());
  }
  out = std::move(ids);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> HfConfigFromJson(const nlohmann::json& json, const nlohmann::json& generation_config,
                                             int max_model_len, const std::string& dir) {
  const std::string where = absl::StrCat(dir, "/config.json");
  if (!json.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  if (!json.contains("architectures") || !json["architectures"].is_array() || json["architectures"].empty() ||
      !json["architectures"][0].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no \"architectures\" list"));
  }
  const std::string arch = json["architectures"][0].get<std::string>();
  if (std::find(std::begin(kArchitectures), std::end(kArchitectures), arch) == std::end(kArchitectures)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": architecture ", arch, " is not supported (supported: ",
                                                   absl::StrJoin(kArchitectures, ", "), ")"));
  }
  if (json.contains("hidden_act") && json["hidden_act"] != "silu") {
    return absl::InvalidArgumentError(absl::StrCat(where, ": hidden_act ", json["hidden_act"].dump(),
                                                   " is not supported (only silu)"));
  }
  ModelConfig c;
  c.architecture = arch;
  c.rope_theta = 10000.0f;
  c.rms_norm_eps = 1e-6f;
  c.shared_classifier = false;
  Reader r(json, where);
  RETURN_IF_ERROR_HF(r.Int("hidden_size", c.dim, true));
  RETURN_IF_ERROR_HF(r.Int("intermediate_size", c.hidden_dim, true));
  RETURN_IF_ERROR_HF(r.Int("num_hidden_layers", c.n_layers, true));
  RETURN_IF_ERROR_HF(r.Int("num_attention_heads", c.n_heads, true));
  c.n_kv_heads = c.n_heads;
  RETURN_IF_ERROR_HF(r.Int("num_key_value_heads", c.n_kv_heads, false));
  RETURN_IF_ERROR_HF(r.Int("vocab_size", c.vocab_size, true));
  RETURN_IF_ERROR_HF(r.Int("max_position_embeddings", c.max_seq_len, true));
  RETURN_IF_ERROR_HF(r.Float("rms_norm_eps", c.rms_norm_eps));
  RETURN_IF_ERROR_HF(r.Float("rope_theta", c.rope_theta));
  RETURN_IF_ERROR_HF(r.Bool("tie_word_embeddings", c.shared_classifier));
  int head_dim = 0;
  RETURN_IF_ERROR_HF(r.Int("head_dim", head_dim, false));
  if (head_dim > 0 && c.n_heads > 0 && head_dim * c.n_heads != c.dim) c.explicit_head_dim = head_dim;
  RETURN_IF_ERROR_HF(ReadRopeScaling(json, where, c.rope_scaling));

  bool attention_bias = false;
  RETURN_IF_ERROR_HF(r.Bool("attention_bias", attention_bias));
  if (arch == "Qwen2ForCausalLM") {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases (and none on o)
  } else if (attention_bias) {
    // Llama's attention_bias also puts a bias on o_proj, which no backend has.
    return absl::InvalidArgumentError(absl::StrCat(where, ": attention_bias is not supported for ", arch));
  }
  c.qk_norm = arch == "Qwen3ForCausalLM";

  if (max_model_len > c.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("--max-model-len ", max_model_len, " exceeds ", where,
                                                   "'s max_position_embeddings of ", c.max_seq_len));
  }
  if (max_model_len > 0) c.max_seq_len = max_model_len;
  if (arch == "MistralForCausalLM" && json.contains("sliding_window") && !json["sliding_window"].is_null()) {
    int window = 0;
    RETURN_IF_ERROR_HF(r.Int("sliding_window", window, true));
    if (window < c.max_seq_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": sliding_window ", window, " is smaller than the served context of ", c.max_seq_len,
          " tokens and sliding-window attention is not supported; pass --max-model-len ", window, " or less"));
    }
  }

  c.bos_token_id = -1;
  RETURN_IF_ERROR_HF(r.Int("bos_token_id", c.bos_token_id, false));
  c.eos_token_ids.clear();
  RETURN_IF_ERROR_HF(ReadEos(json, where, c.eos_token_ids));
  RETURN_IF_ERROR_HF(ReadEos(generation_config, absl::StrCat(dir, "/generation_config.json"), c.eos_token_ids));
  if (c.eos_token_ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": no eos_token_id here or in generation_config.json, so generation could not end"));
  }
  for (int id : c.eos_token_ids) {
    if (id >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": eos_token_id ", id, " is outside the vocabulary of ", c.vocab_size));
    }
  }
  if (absl::Status s = c.Validate(where); !s.ok()) return s;
  if (c.head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": head_dim ", c.head_dim(), " must be even for RoPE"));
  }
  return c;
}

}  // namespace inferd

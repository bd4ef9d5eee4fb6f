#include "engine/tokenizer/hf_post_processor.h"

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/hf_json.h"
#include "nlohmann/json.hpp"

namespace inferd {
namespace {

absl::Status ReadTemplate(const nlohmann::json& config, const std::string& path, HfPostProcessor* out) {
  const std::string single_path = path + ".single";
  if (!config.contains("single") || !config["single"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(single_path, ": expected an array"));
  }
  bool after_sequence = false;
  for (size_t i = 0; i < config["single"].size(); ++i) {
    const nlohmann::json& piece = config["single"][i];
    const std::string piece_path = absl::StrCat(single_path, "[", i, "]");
    if (piece.contains("Sequence")) {
      after_sequence = true;
      continue;
    }
    if (!piece.contains("SpecialToken") || !piece["SpecialToken"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(piece_path, ": expected SpecialToken or Sequence"));
    }
    absl::StatusOr<std::string> name = JsonString(piece["SpecialToken"], "id", piece_path + ".SpecialToken");
    if (!name.ok()) return name.status();
    const std::string special_path = absl::StrCat(path, ".special_tokens[\"", *name, "\"].ids");
    if (!config.contains("special_tokens") || !config["special_tokens"].contains(*name) ||
        !config["special_tokens"][*name].contains("ids") || !config["special_tokens"][*name]["ids"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(special_path, ": expected the ids of \"", *name, "\""));
    }
    for (const nlohmann::json& id : config["special_tokens"][*name]["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        return absl::InvalidArgumentError(absl::StrCat(special_path, ": expected ids >= 0"));
      }
      (after_sequence ? out->suffix_ids : out->prefix_ids).push_back(id.get<int>());
    }
  }
  return absl::OkStatus();
}

absl::Status Read(const nlohmann::json& config, const std::string& path, HfPostProcessor* out) {
  if (config.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = JsonString(config, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return absl::OkStatus();
  if (*type == "TemplateProcessing") return ReadTemplate(config, path, out);
  if (*type == "Sequence") {
    const std::string list_path = path + ".processors";
    if (!config.contains("processors") || !config["processors"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(list_path, ": expected an array"));
    }
    for (size_t i = 0; i < config["processors"].size(); ++i) {
      if (absl::Status s = Read(config["processors"][i], absl::StrCat(list_path, "[", i, "]"), out); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  return absl::UnimplementedError(absl::StrCat(path, ".type: post-processor \"", *type,
                                               "\" is not supported (TemplateProcessing, ByteLevel, Sequence are)"));
}

}  // namespace

absl::StatusOr<HfPostProcessor> ReadHfPostProcessor(const nlohmann::json& config, const std::string& json_path) {
  HfPostProcessor out;
  if (absl::Status s = Read(config, json_path, &out); !s.ok()) return s;
  return out;
}

}  // namespace inferd

#include "engine/tokenizer/hf_json.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace inferd {

absl::StatusOr<std::string> JsonString(const nlohmann::json& object, const std::string& key,
                                       const std::string& json_path) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(json_path, ".", key, ": expected a string"));
  }
  return object[key].get<std::string>();
}

absl::StatusOr<int64_t> JsonInt(const nlohmann::json& object, const std::string& key, const std::string& json_path,
                                int64_t min, int64_t max, int64_t fallback) {
  if (!object.is_object() || !object.contains(key) || object[key].is_null()) return fallback;
  const nlohmann::json& value = object[key];
  // An unsigned value above int64's range reads as negative: refused too.
  if (!value.is_number_integer() || value.get<int64_t>() < min || value.get<int64_t>() > max ||
      (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(max))) {
    return absl::InvalidArgumentError(absl::StrCat(json_path, ".", key, ": expected an integer in [", min, ", ", max, "]"));
  }
  return value.get<int64_t>();
}

absl::StatusOr<bool> JsonBool(const nlohmann::json& object, const std::string& key, const std::string& json_path,
                              bool fallback) {
  if (!object.is_object() || !object.contains(key) || object[key].is_null()) return fallback;
  if (!object[key].is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(json_path, ".", key, ": expected true or false"));
  }
  return object[key].get<bool>();
}

absl::StatusOr<std::string> JsonLiteralPattern(const nlohmann::json& object, const std::string& json_path) {
  const std::string path = json_path + ".pattern";
  if (!object.is_object() || !object.contains("pattern") || !object["pattern"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected {\"String\": ...} or {\"Regex\": ...}"));
  }
  const nlohmann::json& pattern = object["pattern"];
  if (pattern.contains("String") && pattern["String"].is_string()) return pattern["String"].get<std::string>();
  if (pattern.contains("Regex")) {
    return absl::UnimplementedError(absl::StrCat(path, ".Regex: only a String pattern is supported here"));
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": expected {\"String\": ...} or {\"Regex\": ...}"));
}

}  // namespace inferd

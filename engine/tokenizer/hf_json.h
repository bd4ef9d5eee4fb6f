// Reading tokenizer.json fields with errors that name their JSON path.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

// object[key] as a string; an error naming `json_path`.key when missing or
// not a string.
absl::StatusOr<std::string> JsonString(const nlohmann::json& object, const std::string& key,
                                       const std::string& json_path);

// object[key] as a bool, or `fallback` when missing or null.
absl::StatusOr<bool> JsonBool(const nlohmann::json& object, const std::string& key, const std::string& json_path,
                              bool fallback);

// `pattern: {"String": "..."}` of Replace and Split; a Regex pattern is
// refused here (callers that take one read it themselves).
absl::StatusOr<std::string> JsonLiteralPattern(const nlohmann::json& object, const std::string& json_path);

}  // namespace inferd

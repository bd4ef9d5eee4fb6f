// Reading tokenizer.json fields with errors that name their JSON path.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

// Token ids are below this (the largest real vocabularies have ~260k): ids
// index tables, so an absurd id must not become an absurd allocation.
inline constexpr int64_t kMaxTokenId = int64_t{1} << 24;

// object[key] as a string; an error naming `json_path`.key when missing or
// not a string.
absl::StatusOr<std::string> JsonString(const nlohmann::json& object, const std::string& key,
                                       const std::string& json_path);

// object[key] as a bool, or `fallback` when missing or null.
absl::StatusOr<bool> JsonBool(const nlohmann::json& object, const std::string& key, const std::string& json_path,
                              bool fallback);

// object[key] as an integer in [min, max], or `fallback` when missing or
// null; an error for anything else (a float, out of range, not a number).
absl::StatusOr<int64_t> JsonInt(const nlohmann::json& object, const std::string& key, const std::string& json_path,
                                int64_t min, int64_t max, int64_t fallback);

// `pattern: {"String": "..."}` of Replace and Split; a Regex pattern is
// refused here (callers that take one read it themselves).
absl::StatusOr<std::string> JsonLiteralPattern(const nlohmann::json& object, const std::string& json_path);

}  // namespace inferd

// tokenizer.json's `normalizer`: text edits before pre-tokenization. NFC (by
// utf8proc), Prepend, Replace (a literal pattern), Lowercase and Sequence.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

class HfNormalizer {
 public:
  virtual ~HfNormalizer() = default;
  virtual std::string Normalize(std::string text) const = 0;
};

// `json_path` names `config` in errors ("normalizer.normalizers[1]"); a null
// config gives nullptr (no normalizer).
absl::StatusOr<std::unique_ptr<HfNormalizer>> MakeHfNormalizer(const nlohmann::json& config,
                                                               const std::string& json_path);

}  // namespace inferd

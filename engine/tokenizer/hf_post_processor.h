// tokenizer.json's `post_processor`, as far as a prompt needs it: the
// special tokens a single sequence gets in front (TemplateProcessing's
// SpecialTokens before $A). ByteLevel only fixes offsets, which we do not
// report; a Sequence is read through.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

struct HfPostProcessor {
  std::vector<int> prefix_ids;  // added before the text
  std::vector<int> suffix_ids;  // after it (not added to prompts: see Encode)
};

absl::StatusOr<HfPostProcessor> ReadHfPostProcessor(const nlohmann::json& config, const std::string& json_path);

}  // namespace inferd

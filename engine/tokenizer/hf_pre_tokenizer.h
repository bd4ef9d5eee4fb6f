// tokenizer.json's `pre_tokenizer`: cuts normalized text into the words the
// model encodes one by one. Split (a PCRE2 regex or a literal; Isolated or
// Removed), ByteLevel (GPT-2's alphabet, optionally its regex), Metaspace
// ('▁' for spaces) and Sequence.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

class HfPreTokenizer {
 public:
  virtual ~HfPreTokenizer() = default;
  // Replaces every word of `words` by its pieces. `first_section` is whether
  // the words come from the start of the text (before any added token), for
  // Metaspace's prepend_scheme "first".
  virtual void PreTokenize(std::vector<std::string>* words, bool first_section) const = 0;
};

// A null config gives nullptr (the whole section is one word).
absl::StatusOr<std::unique_ptr<HfPreTokenizer>> MakeHfPreTokenizer(const nlohmann::json& config,
                                                                   const std::string& json_path);

}  // namespace inferd

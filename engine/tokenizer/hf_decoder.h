// tokenizer.json's `decoder`, applied token by token so that text can be
// streamed: ByteLevel, Replace (a literal pattern), ByteFallback, Fuse,
// Strip (at the start of the text) and Metaspace, alone or in a Sequence.
// Concatenating the pieces gives what Hugging Face's whole-list decoders
// give: Fuse only joins, ByteFallback's bytes and ByteLevel's bytes join into
// the same UTF-8, and Strip/Metaspace act on the text's first token.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

class HfDecoder {
 public:
  // A null config decodes every piece as itself.
  static absl::StatusOr<HfDecoder> FromJson(const nlohmann::json& config, const std::string& json_path);

  // The bytes `piece` stands for. Added tokens pass through ByteLevel as
  // written (Hugging Face does not byte-decode them) but through the other
  // steps.
  std::string DecodePiece(const std::string& piece, bool added) const;

  // At the start of a text, up to this many leading `strip_char`s of the
  // first token's bytes are dropped (Strip's `start`, Metaspace's prefix).
  int strip_start() const { return strip_start_; }
  char strip_char() const { return strip_char_; }

 private:
  struct Step {
    enum class Kind { kByteLevel, kReplace, kByteFallback } kind;
    std::string from, to;
  };
  absl::Status Add(const nlohmann::json& config, const std::string& json_path);

  std::vector<Step> steps_;
  int strip_start_ = 0;
  char strip_char_ = ' ';
};

}  // namespace inferd

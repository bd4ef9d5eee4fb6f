// A SentencePiece tokenizer.model as a Tokenizer.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(const std::string& path);

}  // namespace inferd

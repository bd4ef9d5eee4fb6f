// A SentencePiece `tokenizer.model` (protobuf), encoded by libsentencepiece
// itself: what a Hugging Face directory without tokenizer.json ships.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

// Control pieces (<s>, </s>) are special tokens; with
// EncodeOptions::parse_special their text in a prompt becomes the token, as
// transformers' LlamaTokenizer does. Errors name `path`.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(const std::string& path);

}  // namespace inferd

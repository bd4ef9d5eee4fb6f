// TEMPORARY (models branch only): the tokenizer branch defines these; the
// lead deletes this file at merge.
#include "absl/status/status.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"

namespace inferd {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path, const std::string&) {
  return absl::UnimplementedError(path + ": tokenizer.json support arrives with the tokenizer branch");
}
absl::StatusOr<std::unique_ptr<Tokenizer>> HfTokenizerFromJson(const nlohmann::json&, const nlohmann::json&) {
  return absl::UnimplementedError("tokenizer.json support arrives with the tokenizer branch");
}
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(const std::string& path) {
  return absl::UnimplementedError(path + ": SentencePiece support arrives with the tokenizer branch");
}

}  // namespace inferd

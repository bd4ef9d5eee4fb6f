// libinferd_sentencepiece.so: SentencePieceLibrary on libsentencepiece
// (see sentencepiece_library.h for why this is a module). No Abseil here:
// sentencepiece_processor.h declares its own absl::string_view.
#include <sentencepiece_processor.h>

#include "engine/tokenizer/sentencepiece_library.h"

namespace inferd {
namespace {

class Library : public SentencePieceLibrary {
 public:
  std::vector<int> Encode(std::string_view text) const override {
    std::vector<int> ids;
    // Fails only on an unloaded model; a loaded one encodes any bytes.
    processor_.Encode(text, &ids).IgnoreError();
    return ids;
  }
  std::string DecodeIds(const std::vector<int>& ids) const override { return processor_.DecodeIds(ids); }
  int piece_size() const override { return processor_.GetPieceSize(); }
  const std::string& IdToPiece(int id) const override { return processor_.IdToPiece(id); }
  bool IsControl(int id) const override { return processor_.IsControl(id); }
  bool IsUnknown(int id) const override { return processor_.IsUnknown(id); }
  bool IsByte(int id) const override { return processor_.IsByte(id); }
  int bos_id() const override { return processor_.bos_id(); }
  int eos_id() const override { return processor_.eos_id(); }

  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace
}  // namespace inferd

extern "C" __attribute__((visibility("default"))) inferd::SentencePieceLibrary* inferd_sentencepiece_load(
    const char* path, std::string* error) {
  auto library = new inferd::Library;
  const sentencepiece::util::Status status = library->processor_.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    delete library;
    return nullptr;
  }
  return library;
}

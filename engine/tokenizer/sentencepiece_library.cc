#include "engine/tokenizer/sentencepiece_library.h"

#include <sentencepiece_processor.h>

#include <utility>

namespace inferd {

struct SentencePieceLibrary::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceLibrary::SentencePieceLibrary(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SentencePieceLibrary::~SentencePieceLibrary() = default;

std::unique_ptr<SentencePieceLibrary> SentencePieceLibrary::Load(const std::string& path, std::string* error) {
  auto impl = std::make_unique<Impl>();
  const sentencepiece::util::Status status = impl->processor.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceLibrary>(new SentencePieceLibrary(std::move(impl)));
}

std::vector<int> SentencePieceLibrary::Encode(std::string_view text) const {
  std::vector<int> ids;
  // Fails only on an unloaded model; a loaded one encodes any bytes.
  impl_->processor.Encode(text, &ids).IgnoreError();
  return ids;
}

std::string SentencePieceLibrary::DecodeIds(const std::vector<int>& ids) const {
  return impl_->processor.DecodeIds(ids);
}

int SentencePieceLibrary::piece_size() const { return impl_->processor.GetPieceSize(); }
const std::string& SentencePieceLibrary::IdToPiece(int id) const { return impl_->processor.IdToPiece(id); }
bool SentencePieceLibrary::IsControl(int id) const { return impl_->processor.IsControl(id); }
bool SentencePieceLibrary::IsUnknown(int id) const { return impl_->processor.IsUnknown(id); }
bool SentencePieceLibrary::IsByte(int id) const { return impl_->processor.IsByte(id); }
int SentencePieceLibrary::bos_id() const { return impl_->processor.bos_id(); }
int SentencePieceLibrary::eos_id() const { return impl_->processor.eos_id(); }

}  // namespace inferd

#include "engine/tokenizer/sentencepiece_tokenizer.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/sentencepiece_library.h"

namespace inferd {
namespace {

constexpr char kSpaceSymbol[] = "\xE2\x96\x81";          // U+2581, SentencePiece's space
constexpr char kUnknownSurface[] = " \xE2\x81\x87 ";      // " ⁇ ", how SentencePiece decodes <unk>

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(std::unique_ptr<SentencePieceLibrary> library, AddedTokenMatcher controls)
      : library_(std::move(library)), controls_(std::move(controls)) {
    const int n = library_->piece_size();
    pieces_.reserve(n);
    decoded_.reserve(n);
    special_.reserve(n);
    for (int id = 0; id < n; ++id) {
      const std::string& piece = library_->IdToPiece(id);
      pieces_.push_back(piece);
      special_.push_back(library_->IsControl(id));
      if (library_->IsControl(id)) {
        decoded_.emplace_back();
      } else if (library_->IsUnknown(id)) {
        decoded_.emplace_back(kUnknownSurface);
      } else if (library_->IsByte(id)) {
        // "<0xAB>"
        decoded_.emplace_back(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
      } else {
        decoded_.push_back(absl::StrReplaceAll(piece, {{kSpaceSymbol, " "}}));
      }
    }
  }

  using Tokenizer::Encode;
  std::vector<int> Encode(std::string_view text, const EncodeOptions& options) const override {
    std::vector<int> ids;
    if (options.add_bos && bos_id() >= 0) ids.push_back(bos_id());
    auto encode = [&](std::string_view part) {
      std::vector<int> part_ids = library_->Encode(part);
      ids.insert(ids.end(), part_ids.begin(), part_ids.end());
    };
    if (!options.parse_special) {
      if (!text.empty()) encode(text);
      return ids;
    }
    controls_.Split(text, encode, [&](int id) { ids.push_back(id); });
    return ids;
  }

  bool AddsBosByDefault() const override { return bos_id() >= 0; }

  // SentencePiece drops the dummy-prefix space of the text's first piece.
  std::string_view DecodeToken(int prev_token, int token) const override {
    if (token < 0 || token >= vocab_size()) return {};
    std::string_view text = decoded_[token];
    const bool at_start = prev_token < 0 || (prev_token < vocab_size() && special_[prev_token]);
    if (at_start && !library_->IsUnknown(token) && !text.empty() && text.front() == ' ') text.remove_prefix(1);
    return text;
  }

  bool IsSpecial(int id) const override { return id >= 0 && id < vocab_size() && special_[id]; }
  const std::string& Piece(int id) const override { return pieces_[id]; }
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return library_->bos_id(); }
  int eos_id() const override { return library_->eos_id(); }

 private:
  std::unique_ptr<SentencePieceLibrary> library_;
  AddedTokenMatcher controls_;
  std::vector<std::string> pieces_;
  std::vector<std::string> decoded_;
  std::vector<bool> special_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(const std::string& path) {
  std::string error;
  std::unique_ptr<SentencePieceLibrary> library = SentencePieceLibrary::Load(path, &error);
  if (library == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a SentencePiece model (", error, ")"));
  }
  std::vector<AddedToken> controls;
  for (int id = 0; id < library->piece_size(); ++id) {
    if (library->IsControl(id)) controls.push_back({.id = id, .content = library->IdToPiece(id), .special = true});
  }
  absl::StatusOr<AddedTokenMatcher> matcher = AddedTokenMatcher::Build(
      controls, [](const AddedToken&) { return true; }, [](const AddedToken& t) { return t.content; });
  if (!matcher.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", matcher.status().message()));
  return std::make_unique<SentencePieceTokenizer>(std::move(library), *std::move(matcher));
}

}  // namespace inferd

// A thin wrapper of libsentencepiece with only standard types in its
// interface: Debian's sentencepiece_processor.h declares its own
// absl::string_view, which clashes with Abseil's, so only
// sentencepiece_library.cc may include it (and no Abseil header).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace inferd {

class SentencePieceLibrary {
 public:
  // nullptr, with `*error` set, when `path` is not a SentencePiece model.
  static std::unique_ptr<SentencePieceLibrary> Load(const std::string& path, std::string* error);
  ~SentencePieceLibrary();

  std::vector<int> Encode(std::string_view text) const;
  std::string DecodeIds(const std::vector<int>& ids) const;
  int piece_size() const;
  const std::string& IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsByte(int id) const;
  int bos_id() const;
  int eos_id() const;

 private:
  struct Impl;
  explicit SentencePieceLibrary(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace inferd

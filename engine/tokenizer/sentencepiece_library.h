// libsentencepiece behind an interface of standard types, loaded at run time.
//
// Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite and
// exports it: linked into a process that also has libprotobuf.so (gRPC), its
// symbols interpose libprotobuf's and the process crashes before main(). So
// the library is only reached through libinferd_sentencepiece.so
// (sentencepiece_module/), dlopen'ed with RTLD_LOCAL | RTLD_DEEPBIND the first
// time a tokenizer.model is loaded: its protobuf then binds to its own copy
// and never meets the process's.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace inferd {

class SentencePieceLibrary {
 public:
  // nullptr, with `*error` set, when the module cannot be loaded or `path`
  // is not a SentencePiece model. The module is looked for at
  // $INFERD_SENTENCEPIECE_MODULE, beside the executable, then where the build
  // put it.
  static std::unique_ptr<SentencePieceLibrary> Load(const std::string& path, std::string* error);
  virtual ~SentencePieceLibrary() = default;

  virtual std::vector<int> Encode(std::string_view text) const = 0;
  virtual std::string DecodeIds(const std::vector<int>& ids) const = 0;
  virtual int piece_size() const = 0;
  virtual const std::string& IdToPiece(int id) const = 0;
  virtual bool IsControl(int id) const = 0;
  virtual bool IsUnknown(int id) const = 0;
  virtual bool IsByte(int id) const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
};

// The module's one exported function.
inline constexpr char kSentencePieceModuleFile[] = "libinferd_sentencepiece.so";
inline constexpr char kSentencePieceModuleEntry[] = "inferd_sentencepiece_load";
using SentencePieceModuleEntry = SentencePieceLibrary* (*)(const char* path, std::string* error);

}  // namespace inferd

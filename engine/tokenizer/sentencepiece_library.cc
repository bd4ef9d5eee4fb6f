#include "engine/tokenizer/sentencepiece_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace inferd {
namespace {

std::string FindModule() {
  if (const char* path = std::getenv("INFERD_SENTENCEPIECE_MODULE"); path != nullptr && *path != '\0') return path;
  std::error_code error;
  const std::filesystem::path beside =
      std::filesystem::read_symlink("/proc/self/exe", error).parent_path() / kSentencePieceModuleFile;
  if (!error && std::filesystem::exists(beside)) return beside.string();
  return INFERD_SENTENCEPIECE_MODULE;
}

// The sanitizer runtimes refuse RTLD_DEEPBIND (google/sanitizers#611): their
// builds (make test-asan, test-tsan) load the module without it. That is
// fine in a process without libprotobuf (the engine's); the one test that
// puts both in a process skips there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kDeepBind = 0;
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif

// Loaded once; the handle stays open for the life of the process.
SentencePieceModuleEntry Entry(std::string* error) {
  static std::string* load_error = new std::string;
  static const SentencePieceModuleEntry entry = [] {
    const std::string path = FindModule();
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | kDeepBind);
    if (handle == nullptr) {
      *load_error = std::string("cannot load ") + path + ": " + dlerror();
      return SentencePieceModuleEntry{nullptr};
    }
    auto found = reinterpret_cast<SentencePieceModuleEntry>(dlsym(handle, kSentencePieceModuleEntry));
    if (found == nullptr) *load_error = path + ": no " + kSentencePieceModuleEntry;
    return found;
  }();
  if (entry == nullptr) *error = *load_error;
  return entry;
}

}  // namespace

std::unique_ptr<SentencePieceLibrary> SentencePieceLibrary::Load(const std::string& path, std::string* error) {
  SentencePieceModuleEntry entry = Entry(error);
  if (entry == nullptr) return nullptr;
  return std::unique_ptr<SentencePieceLibrary>(entry(path.c_str(), error));
}

}  // namespace inferd

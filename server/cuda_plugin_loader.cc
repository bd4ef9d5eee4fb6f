#include "server/cuda_plugin_loader.h"

#include <dlfcn.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cuda/plugin_identity.h"

namespace inferd {

const char* CudaPluginLoaderIdentity() { return kCudaPluginBuildIdentity; }

absl::StatusOr<const CudaPluginApi*> LoadCudaPlugin(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    return absl::UnavailableError(absl::StrCat("inferd was built without CUDA (no ", path, ")"));
  }
  // RTLD_LAZY: a stale plugin whose functions name symbols this process
  // lacks (another Abseil) still loads far enough for its identity to be read.
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot load the CUDA backend: ", dlerror()));
  }
  auto identity = reinterpret_cast<const char* (*)()>(dlsym(handle, kCudaPluginIdentityEntry));
  if (identity == nullptr) {
    return absl::UnavailableError(absl::StrCat(path, ": a stale CUDA plugin (no build identity); rebuild it with this inferd (",
                                               kCudaPluginBuildIdentity, ")"));
  }
  const std::string theirs = identity();
  if (theirs != kCudaPluginBuildIdentity) {
    return absl::UnavailableError(absl::StrCat(path, ": a stale CUDA plugin built from ", theirs,
                                               "; this inferd is ", kCudaPluginBuildIdentity,
                                               "; rebuild the plugin with it"));
  }
  auto entry = reinterpret_cast<const CudaPluginApi* (*)()>(dlsym(handle, kCudaPluginEntry));
  const CudaPluginApi* api = entry != nullptr ? entry() : nullptr;
  if (api == nullptr) return absl::UnavailableError(absl::StrCat(path, ": not a CUDA backend plugin"));
  return api;
}

}  // namespace inferd

// The CUDA backend as a plugin the `inferd` binary loads with dlopen only
// when --backend cuda or auto asks for it: a CPU-only server never maps the
// CUDA libraries (cuBLASLt alone holds ~94 KB of thread-local storage, which
// the initial threads of a process must fit: loaded at start, it breaks
// libraries that create threads with small stacks, such as the metrics
// server's), and the same binary runs on hosts without a CUDA install.
//
// The plugin exports two C symbols: kCudaPluginIdentityEntry, read first, a
// function returning its build identity (plugin_identity.h), which the
// loader compares with its own before it touches anything else; then
// kCudaPluginEntry, the API below.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cuda/cuda_backend.h"

namespace inferd {

inline constexpr char kCudaPluginFile[] = "libinferd_cuda.so";
inline constexpr char kCudaPluginIdentityEntry[] = "inferd_cuda_plugin_build_identity";
inline constexpr char kCudaPluginEntry[] = "inferd_cuda_plugin_api";

struct CudaPluginApi {
  bool (*device_available)(std::string* why);
  absl::StatusOr<std::unique_ptr<Backend>> (*create_backend)(std::shared_ptr<const ModelWeights> weights,
                                                             const CudaBackendOptions& options);
};

}  // namespace inferd

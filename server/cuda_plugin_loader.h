// Loads the CUDA backend plugin (cuda/cuda_plugin.h) and checks that it was
// built with this binary: same commit, compiler, CUDA and Abseil
// (cuda/plugin_identity.h). A missing, foreign or stale plugin is an
// UnavailableError of one line naming the file and what differs.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cuda/cuda_plugin.h"

namespace inferd {

// Loads `path` (kept loaded for the life of the process).
absl::StatusOr<const CudaPluginApi*> LoadCudaPlugin(const std::string& path);

// This binary's side of the identity check.
const char* CudaPluginLoaderIdentity();

}  // namespace inferd

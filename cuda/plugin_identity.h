// The build identity that both sides of the CUDA plugin boundary compile in:
// the `inferd` binary's loader and libinferd_cuda.so. The plugin passes C++
// objects (absl::Status, std::string, ModelWeights) across dlopen, so it is
// usable only when built from the same tree with the same compiler, CUDA and
// Abseil as the binary; the loader compares the two strings and refuses a
// stale plugin in one line (no hand-kept version integer to forget).
#pragma once

#include "absl/base/config.h"
#include "cuda/build_identity.h"  // generated: INFERD_BUILD_COMMIT, INFERD_BUILD_CUDA_VERSION

#define INFERD_IDENTITY_STR2(x) #x
#define INFERD_IDENTITY_STR(x) INFERD_IDENTITY_STR2(x)

#if defined(__clang__)
#define INFERD_IDENTITY_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define INFERD_IDENTITY_COMPILER "gcc " __VERSION__
#else
#define INFERD_IDENTITY_COMPILER "unknown compiler"
#endif

#if defined(ABSL_LTS_RELEASE_VERSION)
#define INFERD_IDENTITY_ABSEIL INFERD_IDENTITY_STR(ABSL_LTS_RELEASE_VERSION) "." INFERD_IDENTITY_STR(ABSL_LTS_RELEASE_PATCH_LEVEL)
#else
#define INFERD_IDENTITY_ABSEIL "head"
#endif

namespace inferd {

inline constexpr char kCudaPluginBuildIdentity[] = "commit " INFERD_BUILD_COMMIT ", " INFERD_IDENTITY_COMPILER
                                                   ", CUDA " INFERD_BUILD_CUDA_VERSION
                                                   ", Abseil " INFERD_IDENTITY_ABSEIL;

}  // namespace inferd

// The CUDA backend's entry points in builds without CUDA (no nvcc found, or
// INFERD_CUDA=OFF): every call says so, nothing crashes.
#include "cuda/cuda_backend.h"

namespace inferd {
namespace {

constexpr char kNoCuda[] = "inferd was built without CUDA (no nvcc found, or INFERD_CUDA=OFF)";

}  // namespace

bool CudaDeviceAvailable(std::string* why) {
  if (why != nullptr) *why = kNoCuda;
  return false;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options) {
  return absl::UnavailableError(kNoCuda);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackendWithDummyWeights(const ModelConfig& config, uint64_t seed,
                                                                           const CudaBackendOptions& options) {
  return absl::UnavailableError(kNoCuda);
}

}  // namespace inferd

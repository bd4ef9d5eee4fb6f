// CUDA and cuBLAS errors as absl::Status, for the backend's host code.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace inferd::cuda {

inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it so later calls are unaffected
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of device memory"));
  }
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}

inline absl::Status CublasStatus(cublasStatus_t err, const char* what) {
  if (err == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cublasGetStatusName(err), " (", cublasGetStatusString(err), ")"));
}

}  // namespace inferd::cuda

#define INFERD_CUDA_RETURN_IF_ERROR(expr)                                       \
  do {                                                                          \
    if (const cudaError_t inferd_err_ = (expr); inferd_err_ != cudaSuccess) {   \
      return ::inferd::cuda::CudaStatus(inferd_err_, #expr);                    \
    }                                                                           \
  } while (0)

#define INFERD_RETURN_IF_ERROR(expr)                                            \
  do {                                                                          \
    if (absl::Status inferd_status_ = (expr); !inferd_status_.ok()) {           \
      return inferd_status_;                                                    \
    }                                                                           \
  } while (0)

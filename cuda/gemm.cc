#include "cuda/gemm.h"

#include <cuda_runtime.h>

#include "cuda/cuda_check.h"

namespace inferd::cuda {
namespace {

cudaDataType_t CudaType(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFloat32: return CUDA_R_32F;
    case Dtype::kFloat16: return CUDA_R_16F;
    case Dtype::kBFloat16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CublasGemm>> CublasGemm::Create(Dtype dtype, cudaStream_t stream) {
  std::unique_ptr<CublasGemm> gemm(new CublasGemm(dtype));
  INFERD_RETURN_IF_ERROR(CublasStatus(cublasCreate(&gemm->handle_), "cublasCreate"));
  INFERD_RETURN_IF_ERROR(CublasStatus(cublasSetStream(gemm->handle_, stream), "cublasSetStream"));
  INFERD_CUDA_RETURN_IF_ERROR(cudaMalloc(&gemm->workspace_, kWorkspaceBytes));
  INFERD_RETURN_IF_ERROR(
      CublasStatus(cublasSetWorkspace(gemm->handle_, gemm->workspace_, kWorkspaceBytes), "cublasSetWorkspace"));
  // fp32 serving is for exactness: no TF32 or other reduced-precision paths.
  INFERD_RETURN_IF_ERROR(CublasStatus(
      cublasSetMathMode(gemm->handle_, dtype == Dtype::kFloat32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH),
      "cublasSetMathMode"));
  return gemm;
}

CublasGemm::~CublasGemm() {
  if (handle_ != nullptr) cublasDestroy(handle_);
  if (workspace_ != nullptr) cudaFree(workspace_);
}

absl::Status CublasGemm::Linear(const void* x, int rows, int in_features, const void* w, int out_features, void* out,
                                bool out_fp32) {
  if (rows <= 0) return absl::OkStatus();
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const cudaDataType_t type = CudaType(dtype_);
  // Column-major view: outᵀ [out_features][rows] = W [out_features x in] · xᵀ,
  // where W is the row-major weight read transposed.
  return CublasStatus(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, out_features, rows, in_features, &alpha, w, type,
                                   in_features, x, type, in_features, &beta, out, out_fp32 ? CUDA_R_32F : type,
                                   out_features, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      "cublasGemmEx");
}

}  // namespace inferd::cuda

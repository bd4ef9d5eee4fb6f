#include "cuda/cuda_graphs.h"

#include <cuda_runtime.h>

#include "cuda/cuda_check.h"

namespace inferd::cuda {

DecodeGraphs::~DecodeGraphs() {
  for (Entry& e : entries_) {
    if (e.exec != nullptr) cudaGraphExecDestroy(e.exec);
  }
}

int DecodeGraphs::BatchSizeFor(int num_seqs, int max_seqs) {
  for (int size : kGraphBatchSizes) {
    if (size >= num_seqs && size <= max_seqs) return size;
  }
  return 0;
}

int DecodeGraphs::num_captured() const {
  int n = 0;
  for (const Entry& e : entries_) n += e.exec != nullptr ? 1 : 0;
  return n;
}

absl::Status DecodeGraphs::Run(int batch_size, cudaStream_t stream, const std::function<absl::Status()>& enqueue) {
  size_t index = 0;
  while (index < kGraphBatchSizes.size() && kGraphBatchSizes[index] != batch_size) ++index;
  if (index == kGraphBatchSizes.size()) return enqueue();
  Entry& entry = entries_[index];
  if (entry.exec != nullptr) {
    INFERD_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(entry.exec, stream));
    return absl::OkStatus();
  }
  if (!entry.warmed_up || entry.capture_failed) {
    entry.warmed_up = true;
    return enqueue();
  }

  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    entry.capture_failed = true;
    return enqueue();
  }
  const absl::Status enqueued = enqueue();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  cudaError_t instantiated = cudaErrorUnknown;
  if (enqueued.ok() && end == cudaSuccess && graph != nullptr) {
    instantiated = cudaGraphInstantiateWithFlags(&entry.exec, graph, 0);
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (instantiated != cudaSuccess) {
    // Capture errors are not sticky: clear them and run this size eagerly.
    cudaGetLastError();
    entry.exec = nullptr;
    entry.capture_failed = true;
    return enqueue();
  }
  INFERD_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(entry.exec, stream));
  return absl::OkStatus();
}

}  // namespace inferd::cuda

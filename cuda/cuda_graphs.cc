#include "cuda/cuda_graphs.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.h"

namespace inferd::cuda {

DecodeGraphs::~DecodeGraphs() {
  for (Entry& e : entries_) cudaGraphExecDestroy(e.exec);
}

std::vector<int> DecodeGraphs::BucketsUpTo(int max_seqs) {
  std::vector<int> sizes;
  for (int size : kGraphBatchSizes) {
    if (size <= max_seqs) sizes.push_back(size);
  }
  for (int size = kGraphBatchSizes.back() + kGraphBatchStepPastList; size < max_seqs;
       size += kGraphBatchStepPastList) {
    sizes.push_back(size);
  }
  if (max_seqs >= 1 && (sizes.empty() || sizes.back() != max_seqs)) sizes.push_back(max_seqs);
  return sizes;
}

const DecodeGraphs::Entry* DecodeGraphs::Find(int batch_size) const {
  for (const Entry& e : entries_) {
    if (e.batch_size == batch_size) return &e;
  }
  return nullptr;
}

int DecodeGraphs::BatchSizeFor(int num_seqs) const {
  for (const Entry& e : entries_) {
    if (e.batch_size >= num_seqs) return e.batch_size;
  }
  return 0;
}

int DecodeGraphs::kernel_nodes(int batch_size) const {
  const Entry* e = Find(batch_size);
  return e != nullptr ? e->kernel_nodes : 0;
}

absl::Status DecodeGraphs::Replay(int batch_size, cudaStream_t stream) const {
  const Entry* e = Find(batch_size);
  if (e == nullptr) return absl::InternalError("CUDA graph replay of a batch size never captured");
  INFERD_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(e->exec, stream));
  return absl::OkStatus();
}

absl::Status DecodeGraphs::Capture(int batch_size, cudaStream_t stream, const std::function<absl::Status()>& enqueue) {
  if (Find(batch_size) != nullptr) return absl::OkStatus();
  // The warm-up: module loading and cuBLAS's first-call work stay out of the graph.
  INFERD_RETURN_IF_ERROR(enqueue());
  INFERD_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));

  INFERD_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status enqueued = enqueue();
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  Entry entry;
  entry.batch_size = batch_size;
  cudaError_t err = ended;
  if (enqueued.ok() && ended == cudaSuccess) {
    size_t num_nodes = 0;
    err = cudaGraphGetNodes(graph, nullptr, &num_nodes);
    std::vector<cudaGraphNode_t> nodes(num_nodes);
    if (err == cudaSuccess && num_nodes > 0) err = cudaGraphGetNodes(graph, nodes.data(), &num_nodes);
    for (size_t i = 0; err == cudaSuccess && i < num_nodes; ++i) {
      cudaGraphNodeType type;
      err = cudaGraphNodeGetType(nodes[i], &type);
      entry.kernel_nodes += type == cudaGraphNodeTypeKernel ? 1 : 0;
    }
    if (err == cudaSuccess) err = cudaGraphInstantiateWithFlags(&entry.exec, graph, 0);
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (!enqueued.ok()) return enqueued;
  INFERD_CUDA_RETURN_IF_ERROR(err);
  entries_.push_back(entry);
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.batch_size < b.batch_size; });
  return absl::OkStatus();
}

}  // namespace inferd::cuda

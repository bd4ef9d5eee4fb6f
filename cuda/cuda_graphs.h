// CUDA graphs for pure-decode steps (nano-vllm's model runner idea), all
// captured at start-up, never on live traffic: one graph per batch-size
// bucket up to max_num_seqs, each captured after one eager warm-up run of
// that size (which loads every kernel and sizes cuBLAS's heuristics). A
// decode batch is padded to the smallest bucket that holds it; the buckets
// are fine enough (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, then
// every 64) that padding wastes at most ~30% of a step. The graphs read their
// inputs from StepInputs' fixed device buffers, so a replay needs only the
// inputs' upload before it.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <functional>
#include <vector>

#include "absl/status/status.h"

namespace inferd::cuda {

inline constexpr std::array<int, 13> kGraphBatchSizes = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256};
// Past the list, buckets every this many sequences.
inline constexpr int kGraphBatchStepPastList = 64;

class DecodeGraphs {
 public:
  DecodeGraphs() = default;
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // Every bucket up to max_seqs, ending with max_seqs itself, so that every
  // decode batch the backend accepts has a graph.
  static std::vector<int> BucketsUpTo(int max_seqs);

  // Warms up and captures the graph of `batch_size` (`enqueue` launches one
  // step of that many sequences on `stream`). A failed capture leaves that
  // size eager and returns the capture's error; the context stays usable.
  absl::Status Capture(int batch_size, cudaStream_t stream, const std::function<absl::Status()>& enqueue);

  // The captured bucket a decode batch of num_seqs is padded to; 0 if none.
  int BatchSizeFor(int num_seqs) const;

  // Replays the graph of a captured `batch_size`.
  absl::Status Replay(int batch_size, cudaStream_t stream) const;

  int num_captured() const { return static_cast<int>(entries_.size()); }
  // Kernel nodes in the graph of `batch_size` (the kernel launches of one
  // decode step, cuBLAS's included); 0 if not captured.
  int kernel_nodes(int batch_size) const;

 private:
  struct Entry {
    int batch_size = 0;
    cudaGraphExec_t exec = nullptr;
    int kernel_nodes = 0;
  };
  const Entry* Find(int batch_size) const;
  std::vector<Entry> entries_;  // ascending batch size
};

}  // namespace inferd::cuda

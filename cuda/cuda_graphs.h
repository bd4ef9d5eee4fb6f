// CUDA graphs for pure-decode steps (nano-vllm's model runner idea): one
// graph per batch size in kGraphBatchSizes, captured after one eager warm-up
// run (which loads every kernel) and replayed for every later step of that
// size. The graph reads its inputs from StepInputs' fixed device buffers, so
// a replay needs only the inputs' upload before it.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <functional>

#include "absl/status/status.h"

namespace inferd::cuda {

inline constexpr std::array<int, 9> kGraphBatchSizes = {1, 2, 4, 8, 16, 32, 64, 128, 256};

class DecodeGraphs {
 public:
  DecodeGraphs() = default;
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // The graph batch size a decode batch of num_seqs sequences is padded to:
  // the smallest one that holds it, within max_seqs; 0 if none does.
  static int BatchSizeFor(int num_seqs, int max_seqs);

  // Runs `enqueue` (which launches one step of `batch_size` sequences on
  // `stream`): eagerly the first time, captured into a graph the second
  // time, and from then on by replaying that graph. If a capture fails, the
  // batch size stays eager.
  absl::Status Run(int batch_size, cudaStream_t stream, const std::function<absl::Status()>& enqueue);

  int num_captured() const;

 private:
  struct Entry {
    bool warmed_up = false;
    bool capture_failed = false;
    cudaGraphExec_t exec = nullptr;
  };
  std::array<Entry, kGraphBatchSizes.size()> entries_;
};

}  // namespace inferd::cuda

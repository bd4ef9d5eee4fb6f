// A step batch as the kernels read it: token ids, positions, KV slots, per
// sequence its slice, context and block table, the decode list and prefill
// tiles, the logit rows. Built on the host in pinned memory and sent in one
// copy to device buffers at fixed addresses, so a captured CUDA graph
// replays with each step's new inputs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "cuda/attention_plan.h"
#include "cuda/kernels.h"
#include "engine/backend.h"

namespace inferd::cuda {

// What one step runs: sizes the launches take (fixed in a captured graph).
struct StepShape {
  int num_tokens = 0;      // rows of every activation (padding included)
  int num_decode = 0;      // sequences the decode kernel runs
  int num_tiles = 0;       // prefill tiles
  int num_logit_rows = 0;  // classifier rows computed (padding included)
  DecodePlan decode_plan;
};

class StepInputs {
 public:
  StepInputs() = default;
  ~StepInputs();
  StepInputs(const StepInputs&) = delete;
  StepInputs& operator=(const StepInputs&) = delete;

  // Buffers for up to max_tokens tokens and max_seqs sequences whose block
  // tables hold up to max_blocks_per_seq entries.
  absl::Status Init(int max_tokens, int max_seqs, int max_blocks_per_seq);

  // Checks `batch` (as the CPU backend does, plus this backend's limits) and
  // lays it out. With pad_to > 0 (a pure decode batch run by a CUDA graph of
  // that batch size) the batch is padded with dummy decode sequences that
  // attend to, and write into, the scratch block. Rows [0,
  // batch.num_logit_rows()) of the logits are the requested ones, in batch
  // order.
  absl::Status Build(const StepBatch& batch, const ModelConfig& model, int num_blocks, int block_size,
                     int scratch_block, const PrefillPlan& prefill_plan, const DecodePlan& decode_plan, int pad_to);

  // Copies what Build laid out to the device buffers (asynchronously).
  cudaError_t Upload(cudaStream_t stream);

  const StepShape& shape() const { return shape_; }

  // Device arrays.
  const int* token_ids() const { return device_ + kTokenIds; }
  const int* positions() const { return device_ + positions_; }
  const int* slot_mapping() const { return device_ + slots_; }
  const int* logit_tokens() const { return device_ + logit_tokens_; }
  AttentionBatch attention_batch() const;

 private:
  static constexpr size_t kDecodeChunk = 0;  // scalars
  static constexpr size_t kTokenIds = 8;

  int max_tokens_ = 0;
  int max_seqs_ = 0;
  int max_blocks_per_seq_ = 0;
  // Offsets (in ints) of each array in the buffers.
  size_t positions_ = 0, slots_ = 0, seq_q_start_ = 0, seq_num_q_ = 0, seq_ctx_ = 0, seq_bt_start_ = 0,
         logit_tokens_ = 0, decode_seqs_ = 0, prefill_tiles_ = 0, block_tables_ = 0, total_ = 0;
  int* host_ = nullptr;    // pinned
  int* device_ = nullptr;
  size_t upload_ints_ = 0;  // what the last Build filled
  StepShape shape_;
  std::vector<PrefillTile> tiles_;  // reused between steps
};

}  // namespace inferd::cuda

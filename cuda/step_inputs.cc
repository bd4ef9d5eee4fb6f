#include "cuda/step_inputs.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_check.h"

namespace inferd::cuda {

StepInputs::~StepInputs() {
  if (host_ != nullptr) cudaFreeHost(host_);
  if (device_ != nullptr) cudaFree(device_);
}

absl::Status StepInputs::Init(int max_tokens, int max_seqs, int max_blocks_per_seq) {
  max_tokens_ = max_tokens;
  max_seqs_ = max_seqs;
  max_blocks_per_seq_ = max_blocks_per_seq;
  const size_t t = static_cast<size_t>(max_tokens), s = static_cast<size_t>(max_seqs);
  size_t offset = kTokenIds + t;
  auto take = [&offset](size_t n) {
    const size_t at = offset;
    offset += n;
    return at;
  };
  positions_ = take(t);
  slots_ = take(t);
  seq_q_start_ = take(s);
  seq_num_q_ = take(s);
  seq_ctx_ = take(s);
  seq_bt_start_ = take(s);
  logit_tokens_ = take(s);
  decode_seqs_ = take(s);
  prefill_tiles_ = take(2 * t);  // a tile holds at least one token
  block_tables_ = take(s * static_cast<size_t>(max_blocks_per_seq) + 1);  // + the padding's scratch entry
  total_ = offset;
  INFERD_CUDA_RETURN_IF_ERROR(cudaMallocHost(&host_, total_ * sizeof(int)));
  INFERD_CUDA_RETURN_IF_ERROR(cudaMalloc(&device_, total_ * sizeof(int)));
  INFERD_CUDA_RETURN_IF_ERROR(cudaMemset(device_, 0, total_ * sizeof(int)));
  std::fill(host_, host_ + total_, 0);
  return absl::OkStatus();
}

absl::Status StepInputs::Build(const StepBatch& batch, const ModelConfig& model, int num_blocks, int block_size,
                               int scratch_block, const PrefillPlan& prefill_plan, const DecodePlan& decode_plan,
                               int pad_to) {
  const int n = batch.num_tokens();
  const int num_seqs = static_cast<int>(batch.sequences.size());
  if (batch.positions.size() != batch.token_ids.size()) {
    return absl::InvalidArgumentError("step batch: positions and token_ids differ in length");
  }
  if (n > max_tokens_ || num_seqs > max_seqs_ || pad_to > max_seqs_ || pad_to > max_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("step batch of ", n, " tokens in ", num_seqs,
                                                   " sequences exceeds the CUDA backend's limits of ", max_tokens_,
                                                   " tokens (max_num_batched_tokens) and ", max_seqs_,
                                                   " sequences (max_num_seqs)"));
  }
  for (int id : batch.token_ids) {
    if (id < 0 || id >= model.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("step batch: token id ", id, " outside the vocabulary of ", model.vocab_size));
    }
  }

  int* token_ids = host_ + kTokenIds;
  int* positions = host_ + positions_;
  int* slots = host_ + slots_;
  int* q_start = host_ + seq_q_start_;
  int* num_q = host_ + seq_num_q_;
  int* ctx = host_ + seq_ctx_;
  int* bt_start = host_ + seq_bt_start_;
  int* logit_tokens = host_ + logit_tokens_;
  int* decode_seqs = host_ + decode_seqs_;
  int* tiles = host_ + prefill_tiles_;
  int* block_tables = host_ + block_tables_;

  int expected_start = 0;
  int bt_used = 0;
  int num_decode = 0;
  int logit_rows = 0;
  int max_decode_context = 1;
  tiles_.clear();
  for (int si = 0; si < num_seqs; ++si) {
    const SequenceSlice& s = batch.sequences[static_cast<size_t>(si)];
    if (s.token_start != expected_start || s.num_tokens < 1 || s.context_len < s.num_tokens ||
        s.context_len > model.max_seq_len) {
      return absl::InvalidArgumentError(absl::StrCat("step batch: bad sequence slice (start ", s.token_start,
                                                     ", tokens ", s.num_tokens, ", context ", s.context_len,
                                                     ", model context ", model.max_seq_len, ")"));
    }
    expected_start += s.num_tokens;
    if (expected_start > n) break;  // reported below
    const int blocks_needed = (s.context_len + block_size - 1) / block_size;
    if (static_cast<int>(s.block_table.size()) < blocks_needed) {
      return absl::InvalidArgumentError(absl::StrCat("step batch: block table of ", s.block_table.size(),
                                                     " blocks for ", s.context_len, " tokens"));
    }
    if (blocks_needed > max_blocks_per_seq_) {
      return absl::InvalidArgumentError(absl::StrCat("step batch: ", blocks_needed, " blocks exceed the ",
                                                     max_blocks_per_seq_, " of a full model context"));
    }
    for (int i = 0; i < blocks_needed; ++i) {
      const int block = s.block_table[static_cast<size_t>(i)];
      if (block < 0 || block >= num_blocks) {
        return absl::InvalidArgumentError(
            absl::StrCat("step batch: block ", block, " outside the pool of ", num_blocks));
      }
      block_tables[bt_used + i] = block;
    }
    q_start[si] = s.token_start;
    num_q[si] = s.num_tokens;
    ctx[si] = s.context_len;
    bt_start[si] = bt_used;
    for (int i = 0; i < s.num_tokens; ++i) {
      const int t = s.token_start + i;
      const int pos = s.context_len - s.num_tokens + i;
      if (batch.positions[static_cast<size_t>(t)] != pos) {
        return absl::InvalidArgumentError("step batch: positions do not follow the context length");
      }
      token_ids[t] = batch.token_ids[static_cast<size_t>(t)];
      positions[t] = pos;
      slots[t] = s.block_table[static_cast<size_t>(pos / block_size)] * block_size + pos % block_size;
    }
    bt_used += blocks_needed;
    if (s.num_tokens == 1) {
      decode_seqs[num_decode++] = si;
      max_decode_context = std::max(max_decode_context, s.context_len);
    } else {
      AppendPrefillTiles(prefill_plan, si, s.num_tokens, &tiles_);
    }
    if (s.need_logits) logit_tokens[logit_rows++] = s.token_start + s.num_tokens - 1;
  }
  if (expected_start != n) return absl::InvalidArgumentError("step batch: sequences do not cover every token");

  shape_ = StepShape();
  shape_.num_tokens = n;
  shape_.num_logit_rows = logit_rows;
  if (pad_to > 0) {
    if (num_decode != num_seqs || num_seqs > pad_to) {
      return absl::InternalError("CUDA graph padding of a batch that is not pure decode");
    }
    // Rows past the requested ones: the other real sequences, then padding.
    for (int si = 0; si < num_seqs; ++si) {
      if (!batch.sequences[static_cast<size_t>(si)].need_logits) logit_tokens[logit_rows++] = si;
    }
    block_tables[bt_used] = scratch_block;
    for (int si = num_seqs; si < pad_to; ++si) {
      token_ids[si] = 0;
      positions[si] = 0;
      slots[si] = scratch_block * block_size;
      q_start[si] = si;
      num_q[si] = 1;
      ctx[si] = 1;
      bt_start[si] = bt_used;
      decode_seqs[num_decode++] = si;
      logit_tokens[logit_rows++] = si;
    }
    bt_used += 1;
    shape_.num_tokens = pad_to;
    shape_.num_logit_rows = pad_to;
  }
  // Heaviest tiles (latest positions, most keys) first, for load balance.
  std::stable_sort(tiles_.begin(), tiles_.end(), [&](const PrefillTile& a, const PrefillTile& b) {
    const int a_end = ctx[a.seq] - num_q[a.seq] + a.first_query;
    const int b_end = ctx[b.seq] - num_q[b.seq] + b.first_query;
    return a_end > b_end;
  });
  for (size_t i = 0; i < tiles_.size(); ++i) {
    tiles[2 * i] = tiles_[i].seq;
    tiles[2 * i + 1] = tiles_[i].first_query;
  }
  shape_.num_decode = num_decode;
  shape_.num_tiles = static_cast<int>(tiles_.size());
  shape_.decode_plan = decode_plan;
  host_[kDecodeChunk] = DecodeChunkTokens(decode_plan, max_decode_context);
  upload_ints_ = block_tables_ + static_cast<size_t>(bt_used);
  return absl::OkStatus();
}

cudaError_t StepInputs::Upload(cudaStream_t stream) {
  return cudaMemcpyAsync(device_, host_, upload_ints_ * sizeof(int), cudaMemcpyHostToDevice, stream);
}

AttentionBatch StepInputs::attention_batch() const {
  AttentionBatch b;
  b.seq_q_start = device_ + seq_q_start_;
  b.seq_num_q = device_ + seq_num_q_;
  b.seq_ctx = device_ + seq_ctx_;
  b.seq_bt_start = device_ + seq_bt_start_;
  b.block_tables = device_ + block_tables_;
  b.decode_seqs = device_ + decode_seqs_;
  b.prefill_tiles = device_ + prefill_tiles_;
  b.decode_chunk = device_ + kDecodeChunk;
  return b;
}

}  // namespace inferd::cuda

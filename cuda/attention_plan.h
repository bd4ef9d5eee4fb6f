// Host-side plans for the attention kernels (FlashInfer's plan/run split):
// how a step's attention work is cut into thread blocks, decided once per
// step and reused by every layer's launch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace inferd::cuda {

// Query heads of one KV head handled by one thread block: the block reads
// that KV head's cache once for all of them (grouped-query attention).
inline constexpr int kMaxHeadsPerCta = 8;
// Split-K decode: at most this many splits of one sequence's context.
inline constexpr int kMaxDecodeSplits = 64;
// A split covers at least this many context tokens.
inline constexpr int kMinDecodeChunk = 64;
// Query rows (token, head) of one prefill thread block.
inline constexpr int kPrefillRows = 64;

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;

  int group() const { return n_heads / n_kv_heads; }
  int heads_per_cta() const { return std::min(group(), kMaxHeadsPerCta); }
  int head_chunks() const { return (group() + kMaxHeadsPerCta - 1) / kMaxHeadsPerCta; }
};

// Decode (one new token per sequence), flash-decoding: the grid is
// (num_splits, n_kv_heads * head_chunks, num_seqs); split s of a sequence
// covers context tokens [s * chunk, (s + 1) * chunk). The chunk length is
// read from device memory, so a captured graph adapts it to each step's
// longest context while the grid stays fixed.
struct DecodePlan {
  int num_splits = 1;
};

// Splits so that the grid fills the device about twice over.
inline DecodePlan PlanDecode(const AttentionShape& shape, int num_seqs, int num_sms, int max_seq_len) {
  DecodePlan plan;
  const int64_t base = int64_t{num_seqs} * shape.n_kv_heads * shape.head_chunks();
  const int64_t target = 2LL * std::max(num_sms, 1);
  int64_t splits = base > 0 ? (target + base - 1) / base : 1;
  const int64_t useful = (max_seq_len + kMinDecodeChunk - 1) / kMinDecodeChunk;
  splits = std::clamp<int64_t>(splits, 1, std::min<int64_t>(kMaxDecodeSplits, std::max<int64_t>(useful, 1)));
  plan.num_splits = static_cast<int>(splits);
  return plan;
}

// Context tokens per split for a step whose longest context is max_context;
// num_splits * chunk >= max_context always.
inline int DecodeChunkTokens(const DecodePlan& plan, int max_context) {
  const int per_split = (max_context + plan.num_splits - 1) / plan.num_splits;
  const int rounded = (per_split + 15) / 16 * 16;
  return std::max(rounded, kMinDecodeChunk);
}

// Prefill (several new tokens of a sequence, causal): the grid is
// (num_tiles, n_kv_heads * head_chunks); a tile is tokens_per_tile
// consecutive new tokens of one sequence, times the heads of one chunk.
struct PrefillPlan {
  int tokens_per_tile = 1;
};

inline PrefillPlan PlanPrefill(const AttentionShape& shape) {
  PrefillPlan plan;
  plan.tokens_per_tile = std::max(1, kPrefillRows / shape.heads_per_cta());
  return plan;
}

// One prefill tile: sequence index in the batch and its first query (an
// index among that sequence's new tokens).
struct PrefillTile {
  int seq = 0;
  int first_query = 0;
};

// Appends the tiles of a sequence with num_queries new tokens.
inline void AppendPrefillTiles(const PrefillPlan& plan, int seq, int num_queries, std::vector<PrefillTile>* tiles) {
  for (int q = 0; q < num_queries; q += plan.tokens_per_tile) tiles->push_back({seq, q});
}

}  // namespace inferd::cuda

// KvCacheManager: the bookkeeping of the paged KV cache's blocks (the backend
// owns the memory). Blocks are reference-counted; with prefix caching, a full
// block is identified by a hash chained from its parent block's hash and its
// own token ids, and stays findable after it is freed until it is evicted
// (least recently used first) because a new block is needed.
//
// Owned by the engine thread: no locks.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"

namespace inferd {

struct KvCacheStats {
  int num_blocks = 0;
  int num_used_blocks = 0;    // reference count > 0
  int num_cached_blocks = 0;  // findable by hash (used or free)
  int64_t prefix_queried_tokens = 0;  // tokens looked up (running total)
  int64_t prefix_hit_tokens = 0;      // of those, found in the cache
};

class KvCacheManager {
 public:
  KvCacheManager(int num_blocks, int block_size, bool enable_prefix_caching);

  // For a sequence with no blocks yet: finds the longest chain of cached full
  // blocks that are a prefix of `tokens`, looking at no more than
  // tokens.size() - 1 tokens (the last token is always recomputed for its
  // logits). Takes a reference on each block found, appends them to
  // `block_table` and their hashes to `block_hashes`, and returns the number
  // of tokens they hold. Adds tokens.size() to the queried count and the
  // result to the hit count. Returns 0 when prefix caching is off.
  int AcquireCachedPrefix(absl::Span<const int> tokens, std::vector<int>* block_table,
                          std::vector<uint64_t>* block_hashes);

  // What AcquireCachedPrefix would find now, without taking anything or
  // counting the lookup: the tokens it would cover, and how many of those
  // blocks sit in the free queue (so taking them uses up free blocks).
  struct PrefixProbe {
    int hit_tokens = 0;
    int hit_blocks_now_free = 0;
  };
  PrefixProbe ProbeCachedPrefix(absl::Span<const int> tokens) const;

  // Blocks that must be allocated for `block_table` to cover `num_tokens`.
  int BlocksNeeded(absl::Span<const int> block_table, int num_tokens) const;
  // Blocks that can be allocated now (free, including cached-but-unused ones).
  int num_free_blocks() const;
  // Appends fresh blocks (reference count 1) until `block_table` covers
  // `num_tokens`; evicts cached free blocks as needed, least recently used
  // first. ResourceExhausted, with the table unchanged, if they do not fit.
  absl::Status Grow(std::vector<int>* block_table, int num_tokens);

  // Makes the full blocks among the first `num_computed_tokens` of `tokens`
  // findable, continuing the chain from block_hashes->size() (blocks already
  // registered for this sequence). A block whose key is already cached under
  // another block stays private. No-op when prefix caching is off.
  void CacheFullBlocks(absl::Span<const int> tokens, int num_computed_tokens,
                       absl::Span<const int> block_table, std::vector<uint64_t>* block_hashes);

  // Drops the sequence's reference on each block and clears both vectors.
  // Blocks no longer referenced become free: the sequence's last block is
  // the first to be evicted, its first block the last.
  void Free(std::vector<int>* block_table, std::vector<uint64_t>* block_hashes);

  KvCacheStats stats() const;
  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  bool prefix_caching() const { return enable_prefix_caching_; }
  int ref_count(int block) const { return blocks_[block].ref_count; }

  // Verifies the internal invariants (free queue holds exactly the blocks
  // with no references, the hash map and blocks agree, counts add up); for
  // tests and debug checks after every step.
  absl::Status CheckInvariants() const;

 private:
  struct Block {
    int ref_count = 0;
    bool cached = false;  // present in cached_ under `hash`
    uint64_t hash = 0;
    std::vector<int> tokens;  // the block's token ids while cached (for lookups that compare tokens)
    int prev_free = -1;       // free queue links; -1 at the ends
    int next_free = -1;
    bool in_free_queue = false;
  };

  // Intrusive doubly linked free queue: O(1) push, pop and removal on reuse.
  void PushFreeBack(int block);
  int PopFreeFront();
  void RemoveFromFree(int block);
  void Evict(int block);
  // Calls visit(block, hash) for each block of the longest cached chain
  // that prefixes tokens[0, tokens.size() - 1).
  template <typename Visit>
  void WalkCachedPrefix(absl::Span<const int> tokens, Visit visit) const;
  static uint64_t ChainHash(uint64_t parent_hash, absl::Span<const int> tokens);
  int FindCached(uint64_t hash, absl::Span<const int> tokens) const;

  int block_size_;
  bool enable_prefix_caching_;
  std::vector<Block> blocks_;
  int free_head_ = -1;
  int free_tail_ = -1;
  int num_free_ = 0;
  absl::flat_hash_map<uint64_t, int> cached_;  // chained hash -> block
  int64_t prefix_queried_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
};

}  // namespace inferd

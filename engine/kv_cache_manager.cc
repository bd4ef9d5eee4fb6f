#include "engine/kv_cache_manager.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

// Parent hash of a sequence's first block. Any fixed value works: hashes only
// have to agree within this process.
constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ULL;

int CeilDiv(int a, int b) { return (a + b - 1) / b; }

}  // namespace

KvCacheManager::KvCacheManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : block_size_(block_size), enable_prefix_caching_(enable_prefix_caching), blocks_(num_blocks) {
  assert(num_blocks >= 0 && block_size > 0);
  for (int b = 0; b < num_blocks; ++b) PushFreeBack(b);
}

template <typename Visit>
void KvCacheManager::WalkCachedPrefix(absl::Span<const int> tokens, Visit visit) const {
  // The last token is always recomputed, so only blocks fully inside the
  // first tokens.size() - 1 tokens can be reused.
  const int limit = (static_cast<int>(tokens.size()) - 1) / block_size_;
  uint64_t parent = kRootHash;
  for (int i = 0; i < limit; ++i) {
    const absl::Span<const int> block_tokens = tokens.subspan(i * block_size_, block_size_);
    const uint64_t hash = ChainHash(parent, block_tokens);
    const int block = FindCached(hash, block_tokens);
    if (block < 0) return;
    visit(block, hash);
    parent = hash;
  }
}

KvCacheManager::PrefixProbe KvCacheManager::ProbeCachedPrefix(absl::Span<const int> tokens) const {
  PrefixProbe probe;
  if (!enable_prefix_caching_ || tokens.empty()) return probe;
  WalkCachedPrefix(tokens, [&](int block, uint64_t) {
    probe.hit_tokens += block_size_;
    if (blocks_[block].ref_count == 0) ++probe.hit_blocks_now_free;
  });
  return probe;
}

int KvCacheManager::AcquireCachedPrefix(absl::Span<const int> tokens, std::vector<int>* block_table,
                                        std::vector<uint64_t>* block_hashes) {
  assert(block_table->empty() && block_hashes->empty());
  if (!enable_prefix_caching_ || tokens.empty()) return 0;
  int hit_tokens = 0;
  WalkCachedPrefix(tokens, [&](int block, uint64_t hash) {
    // Touch: a referenced block is out of the free queue, so cannot be evicted.
    if (blocks_[block].ref_count == 0) RemoveFromFree(block);
    ++blocks_[block].ref_count;
    block_table->push_back(block);
    block_hashes->push_back(hash);
    hit_tokens += block_size_;
  });
  prefix_queried_tokens_ += static_cast<int64_t>(tokens.size());
  prefix_hit_tokens_ += hit_tokens;
  return hit_tokens;
}

int KvCacheManager::BlocksNeeded(absl::Span<const int> block_table, int num_tokens) const {
  return std::max(0, CeilDiv(num_tokens, block_size_) - static_cast<int>(block_table.size()));
}

int KvCacheManager::num_free_blocks() const { return num_free_; }

absl::Status KvCacheManager::Grow(std::vector<int>* block_table, int num_tokens) {
  const int needed = BlocksNeeded(*block_table, num_tokens);
  if (needed > num_free_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache: covering ", num_tokens, " tokens needs ", needed, " more blocks of ",
        block_size_, " tokens, but only ", num_free_, " of ", num_blocks(), " blocks are free"));
  }
  for (int i = 0; i < needed; ++i) {
    const int block = PopFreeFront();
    // The least recently used free block gives up its cached contents.
    if (blocks_[block].cached) Evict(block);
    blocks_[block].ref_count = 1;
    block_table->push_back(block);
  }
  return absl::OkStatus();
}

void KvCacheManager::CacheFullBlocks(absl::Span<const int> tokens, int num_computed_tokens,
                                     absl::Span<const int> block_table,
                                     std::vector<uint64_t>* block_hashes) {
  if (!enable_prefix_caching_) return;
  const int num_full = std::min(num_computed_tokens, static_cast<int>(tokens.size())) / block_size_;
  for (int i = static_cast<int>(block_hashes->size());
       i < num_full && i < static_cast<int>(block_table.size()); ++i) {
    const uint64_t parent = i > 0 ? (*block_hashes)[i - 1] : kRootHash;
    const absl::Span<const int> block_tokens = tokens.subspan(i * block_size_, block_size_);
    const uint64_t hash = ChainHash(parent, block_tokens);
    Block& block = blocks_[block_table[i]];
    // If another block already holds this key (the same contents computed by
    // a concurrent sequence, or a hash collision), this copy stays private:
    // it is freed as worthless and the existing one keeps serving hits.
    if (!block.cached && !cached_.contains(hash)) {
      block.cached = true;
      block.hash = hash;
      block.tokens.assign(block_tokens.begin(), block_tokens.end());
      cached_.emplace(hash, block_table[i]);
    }
    // The chain continues either way: later blocks hash from this key.
    block_hashes->push_back(hash);
  }
}

void KvCacheManager::Free(std::vector<int>* block_table, std::vector<uint64_t>* block_hashes) {
  // Last block first, so that the tail of the sequence is evicted before its
  // head: a later request sharing only the beginning still hits.
  for (auto it = block_table->rbegin(); it != block_table->rend(); ++it) {
    const int b = *it;
    Block& block = blocks_[b];
    assert(block.ref_count > 0);
    if (--block.ref_count > 0) continue;
    if (block.cached) {
      PushFreeBack(b);
      continue;
    }
    // An uncached block cannot serve a hit, so it is the first to be reused.
    block.in_free_queue = true;
    block.prev_free = -1;
    block.next_free = free_head_;
    if (free_head_ >= 0) {
      blocks_[free_head_].prev_free = b;
    } else {
      free_tail_ = b;
    }
    free_head_ = b;
    ++num_free_;
  }
  block_table->clear();
  block_hashes->clear();
}

KvCacheStats KvCacheManager::stats() const {
  KvCacheStats s;
  s.num_blocks = num_blocks();
  // A block is in the free queue exactly when nothing references it.
  s.num_used_blocks = num_blocks() - num_free_;
  s.num_cached_blocks = static_cast<int>(cached_.size());
  s.prefix_queried_tokens = prefix_queried_tokens_;
  s.prefix_hit_tokens = prefix_hit_tokens_;
  return s;
}

absl::Status KvCacheManager::CheckInvariants() const {
  int num_cached = 0;
  for (int b = 0; b < num_blocks(); ++b) {
    const Block& block = blocks_[b];
    if (block.ref_count < 0) {
      return absl::InternalError(
          absl::StrCat("KV block ", b, " has negative reference count ", block.ref_count));
    }
    if (block.in_free_queue != (block.ref_count == 0)) {
      return absl::InternalError(absl::StrCat("KV block ", b, " has reference count ",
                                              block.ref_count, " but in_free_queue is ",
                                              block.in_free_queue));
    }
    if (block.cached) {
      ++num_cached;
    } else if (!block.tokens.empty()) {
      return absl::InternalError(absl::StrCat("KV block ", b, " is not cached but keeps tokens"));
    }
  }

  int count = 0;
  int prev = -1;
  for (int b = free_head_; b >= 0; b = blocks_[b].next_free) {
    if (b >= num_blocks() || ++count > num_free_) {
      return absl::InternalError(absl::StrCat("KV free queue is longer than num_free_ = ",
                                              num_free_, " or links out of range (block ", b, ")"));
    }
    if (!blocks_[b].in_free_queue || blocks_[b].prev_free != prev) {
      return absl::InternalError(absl::StrCat("KV free queue broken at block ", b, ": prev link ",
                                              blocks_[b].prev_free, ", expected ", prev));
    }
    prev = b;
  }
  if (count != num_free_ || prev != free_tail_) {
    return absl::InternalError(absl::StrCat("KV free queue holds ", count, " blocks ending at ",
                                            prev, ", but num_free_ = ", num_free_,
                                            " and tail = ", free_tail_));
  }

  for (const auto& [hash, b] : cached_) {
    if (b < 0 || b >= num_blocks() || !blocks_[b].cached || blocks_[b].hash != hash ||
        static_cast<int>(blocks_[b].tokens.size()) != block_size_) {
      return absl::InternalError(
          absl::StrCat("KV prefix map entry ", hash, " -> block ", b, " disagrees with the block"));
    }
  }
  if (num_cached != static_cast<int>(cached_.size())) {
    return absl::InternalError(absl::StrCat(num_cached, " KV blocks are marked cached but the ",
                                            "prefix map holds ", cached_.size()));
  }
  return absl::OkStatus();
}

void KvCacheManager::PushFreeBack(int block) {
  Block& b = blocks_[block];
  b.in_free_queue = true;
  b.next_free = -1;
  b.prev_free = free_tail_;
  if (free_tail_ >= 0) {
    blocks_[free_tail_].next_free = block;
  } else {
    free_head_ = block;
  }
  free_tail_ = block;
  ++num_free_;
}

int KvCacheManager::PopFreeFront() {
  assert(free_head_ >= 0);
  const int block = free_head_;
  RemoveFromFree(block);
  return block;
}

void KvCacheManager::RemoveFromFree(int block) {
  Block& b = blocks_[block];
  assert(b.in_free_queue);
  if (b.prev_free >= 0) {
    blocks_[b.prev_free].next_free = b.next_free;
  } else {
    free_head_ = b.next_free;
  }
  if (b.next_free >= 0) {
    blocks_[b.next_free].prev_free = b.prev_free;
  } else {
    free_tail_ = b.prev_free;
  }
  b.prev_free = b.next_free = -1;
  b.in_free_queue = false;
  --num_free_;
}

void KvCacheManager::Evict(int block) {
  Block& b = blocks_[block];
  cached_.erase(b.hash);
  b.cached = false;
  b.hash = 0;
  b.tokens.clear();  // keeps capacity: the next registration reuses it
}

uint64_t KvCacheManager::ChainHash(uint64_t parent_hash, absl::Span<const int> tokens) {
  return absl::Hash<std::pair<uint64_t, absl::Span<const int>>>{}(
      std::make_pair(parent_hash, tokens));
}

int KvCacheManager::FindCached(uint64_t hash, absl::Span<const int> tokens) const {
  const auto it = cached_.find(hash);
  if (it == cached_.end()) return -1;
  // Equal hashes with different tokens are a collision, not a hit: serving it
  // would attend to another prefix's K/V.
  if (absl::MakeConstSpan(blocks_[it->second].tokens) != tokens) return -1;
  return it->second;
}

}  // namespace inferd

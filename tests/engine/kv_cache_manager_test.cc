// KV block pool and prefix cache: allocation accounting, exact prefix-hit
// counts, sharing, LRU eviction order, token comparison on lookup, and a
// randomized run that checks the invariants after every operation.
#include "engine/kv_cache_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "absl/status/status.h"

namespace inferd {
namespace {

// One sequence's view of the cache, as the scheduler keeps it.
struct Seq {
  std::vector<int> tokens;
  std::vector<int> table;
  std::vector<uint64_t> hashes;
};

// Runs a sequence as the engine would: take the cached prefix, allocate the
// rest, compute everything, register the full blocks. Returns the hit tokens.
int RunAndCache(KvCacheManager& kv, Seq& s) {
  const int hit = kv.AcquireCachedPrefix(s.tokens, &s.table, &s.hashes);
  EXPECT_TRUE(kv.Grow(&s.table, static_cast<int>(s.tokens.size())).ok());
  kv.CacheFullBlocks(s.tokens, static_cast<int>(s.tokens.size()), s.table, &s.hashes);
  EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
  return hit;
}

// Hit tokens for `tokens` now, without keeping the blocks.
int Probe(KvCacheManager& kv, const std::vector<int>& tokens) {
  Seq s{tokens, {}, {}};
  const int hit = kv.AcquireCachedPrefix(s.tokens, &s.table, &s.hashes);
  kv.Free(&s.table, &s.hashes);
  return hit;
}

std::vector<int> Iota(int n, int start) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

std::vector<int> Concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(KvCacheManagerTest, GrowAndFreeAccounting) {
  KvCacheManager kv(8, 4, /*enable_prefix_caching=*/false);
  EXPECT_EQ(kv.num_free_blocks(), 8);
  std::vector<int> a, b;
  std::vector<uint64_t> ha, hb;

  EXPECT_EQ(kv.BlocksNeeded(a, 10), 3);
  ASSERT_TRUE(kv.Grow(&a, 10).ok());
  EXPECT_EQ(a, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 5);
  EXPECT_EQ(kv.BlocksNeeded(a, 12), 0);
  EXPECT_EQ(kv.BlocksNeeded(a, 5), 0);
  ASSERT_TRUE(kv.Grow(&a, 12).ok());
  EXPECT_EQ(a.size(), 3u);
  ASSERT_TRUE(kv.Grow(&a, 13).ok());
  EXPECT_EQ(a.size(), 4u);
  EXPECT_EQ(kv.stats().num_used_blocks, 4);

  ASSERT_TRUE(kv.Grow(&b, 4).ok());
  const std::vector<int> b_before = b;
  const absl::Status st = kv.Grow(&b, 4 + 4 * 4);  // 4 more blocks, 3 free
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_EQ(b, b_before);
  EXPECT_EQ(kv.num_free_blocks(), 3);

  kv.Free(&a, &ha);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(kv.num_free_blocks(), 7);
  kv.Free(&b, &hb);
  EXPECT_EQ(kv.num_free_blocks(), 8);
  const KvCacheStats s = kv.stats();
  EXPECT_EQ(s.num_blocks, 8);
  EXPECT_EQ(s.num_used_blocks, 0);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(kv.ref_count(i), 0);
  EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
}

TEST(KvCacheManagerTest, FreedBlocksAreReused) {
  KvCacheManager kv(4, 2, false);
  std::vector<int> a;
  std::vector<uint64_t> h;
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(kv.Grow(&a, 8).ok());
    std::vector<int> sorted = a;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<int>{0, 1, 2, 3}));
    EXPECT_FALSE(kv.Grow(&a, 9).ok());
    kv.Free(&a, &h);
    EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
  }
  EXPECT_EQ(kv.num_free_blocks(), 4);
}

TEST(KvCacheManagerTest, PrefixHitsCountedExactly) {
  KvCacheManager kv(16, 4, true);
  const std::vector<int> a_tokens = Iota(10, 100);
  Seq a{a_tokens, {}, {}};
  EXPECT_EQ(RunAndCache(kv, a), 0);
  EXPECT_EQ(a.hashes.size(), 2u);  // 10 tokens: 2 full blocks
  EXPECT_EQ(kv.stats().num_cached_blocks, 2);
  kv.Free(&a.table, &a.hashes);

  // Same first 9 tokens, then different.
  std::vector<int> b_tokens(a_tokens.begin(), a_tokens.begin() + 9);
  b_tokens.insert(b_tokens.end(), {7, 7, 7});
  EXPECT_EQ(Probe(kv, b_tokens), 8);
  EXPECT_EQ(Probe(kv, a_tokens), 8);  // cap: 9 tokens -> 2 full blocks
  EXPECT_EQ(Probe(kv, std::vector<int>(a_tokens.begin(), a_tokens.begin() + 9)), 8);
  EXPECT_EQ(Probe(kv, std::vector<int>(a_tokens.begin(), a_tokens.begin() + 8)), 4);
  EXPECT_EQ(Probe(kv, std::vector<int>(a_tokens.begin(), a_tokens.begin() + 5)), 4);
  EXPECT_EQ(Probe(kv, std::vector<int>(a_tokens.begin(), a_tokens.begin() + 4)), 0);
  EXPECT_EQ(Probe(kv, Iota(10, 0)), 0);

  const KvCacheStats s = kv.stats();
  EXPECT_EQ(s.prefix_queried_tokens, 10 + 12 + 10 + 9 + 8 + 5 + 4 + 10);
  EXPECT_EQ(s.prefix_hit_tokens, 8 + 8 + 8 + 4 + 4);
  EXPECT_EQ(s.num_used_blocks, 0);
  EXPECT_EQ(s.num_cached_blocks, 2);
  EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
}

TEST(KvCacheManagerTest, CachingIncrementallyGivesTheSameChain) {
  KvCacheManager kv(16, 4, true);
  Seq a{Iota(14, 0), {}, {}};
  ASSERT_TRUE(kv.Grow(&a.table, 14).ok());
  kv.CacheFullBlocks(a.tokens, 3, a.table, &a.hashes);
  EXPECT_EQ(a.hashes.size(), 0u);
  kv.CacheFullBlocks(a.tokens, 5, a.table, &a.hashes);
  EXPECT_EQ(a.hashes.size(), 1u);
  kv.CacheFullBlocks(a.tokens, 13, a.table, &a.hashes);
  EXPECT_EQ(a.hashes.size(), 3u);
  kv.CacheFullBlocks(a.tokens, 14, a.table, &a.hashes);
  EXPECT_EQ(a.hashes.size(), 3u);

  // A second live copy computed from scratch: its blocks stay private (the
  // key is taken), but its chain of hashes is the same.
  Seq b{a.tokens, {}, {}};
  ASSERT_TRUE(kv.Grow(&b.table, 14).ok());
  kv.CacheFullBlocks(b.tokens, 14, b.table, &b.hashes);
  EXPECT_EQ(b.hashes, a.hashes);
  EXPECT_EQ(kv.stats().num_cached_blocks, 3);
  EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();

  // The private copies (and A's partial last block) are worthless once
  // freed: they are reused before A's cached blocks.
  kv.Free(&b.table, &b.hashes);
  kv.Free(&a.table, &a.hashes);
  Seq c{Iota(16, 500), {}, {}};
  ASSERT_TRUE(kv.Grow(&c.table, 16).ok());
  EXPECT_EQ(c.table, (std::vector<int>{3, 4, 5, 6}));
  EXPECT_EQ(Probe(kv, Concat(Iota(12, 0), {99})), 12);
}

TEST(KvCacheManagerTest, SharedBlocksAreReferenceCounted) {
  KvCacheManager kv(16, 4, true);
  const std::vector<int> prefix = Iota(8, 1);
  Seq a{Concat(prefix, {50, 51}), {}, {}};
  RunAndCache(kv, a);

  Seq b{Concat(prefix, {60}), {}, {}};
  Seq c{Concat(prefix, {70, 71, 72}), {}, {}};
  EXPECT_EQ(RunAndCache(kv, b), 8);
  EXPECT_EQ(RunAndCache(kv, c), 8);
  EXPECT_EQ(kv.ref_count(a.table[0]), 3);
  EXPECT_EQ(kv.ref_count(a.table[1]), 3);
  EXPECT_EQ(b.table[0], a.table[0]);
  EXPECT_EQ(c.table[1], a.table[1]);
  EXPECT_NE(b.table[2], c.table[2]);
  // A: 3 blocks, B and C one private tail block each.
  EXPECT_EQ(kv.stats().num_used_blocks, 5);

  kv.Free(&a.table, &a.hashes);
  EXPECT_EQ(kv.ref_count(b.table[0]), 2);
  EXPECT_EQ(kv.ref_count(b.table[1]), 2);
  EXPECT_EQ(kv.stats().num_used_blocks, 4);
  kv.Free(&b.table, &b.hashes);
  EXPECT_EQ(kv.ref_count(c.table[0]), 1);
  EXPECT_EQ(kv.stats().num_used_blocks, 3);
  kv.Free(&c.table, &c.hashes);
  EXPECT_EQ(kv.stats().num_used_blocks, 0);
  EXPECT_EQ(kv.num_free_blocks(), 16);
  EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
}

TEST(KvCacheManagerTest, EvictsLeastRecentlyFreedAndTailBeforeHead) {
  KvCacheManager kv(6, 4, true);
  Seq a{Iota(8, 100), {}, {}};
  Seq b{Iota(8, 200), {}, {}};
  Seq c{Iota(8, 300), {}, {}};
  RunAndCache(kv, a);
  RunAndCache(kv, b);
  RunAndCache(kv, c);
  EXPECT_EQ(a.table, (std::vector<int>{0, 1}));
  EXPECT_EQ(b.table, (std::vector<int>{2, 3}));
  EXPECT_EQ(c.table, (std::vector<int>{4, 5}));
  EXPECT_EQ(kv.num_free_blocks(), 0);
  kv.Free(&a.table, &a.hashes);
  kv.Free(&b.table, &b.hashes);
  kv.Free(&c.table, &c.hashes);
  EXPECT_EQ(kv.num_free_blocks(), 6);
  EXPECT_EQ(kv.stats().num_cached_blocks, 6);

  const std::vector<int> a_query = Concat(Iota(8, 100), {1});
  const std::vector<int> b_query = Concat(Iota(8, 200), {1});
  const std::vector<int> c_query = Concat(Iota(8, 300), {1});

  // A's tail block goes first; its head would be next, but a hit touches it.
  std::vector<int> d;
  std::vector<uint64_t> dh;
  ASSERT_TRUE(kv.Grow(&d, 1).ok());
  EXPECT_EQ(d, (std::vector<int>{1}));
  EXPECT_EQ(Probe(kv, a_query), 4);
  // That probe touched A's head block and put it back at the recent end.
  ASSERT_TRUE(kv.Grow(&d, 5).ok());
  EXPECT_EQ(d, (std::vector<int>{1, 3}));
  EXPECT_EQ(Probe(kv, b_query), 4);
  EXPECT_EQ(Probe(kv, a_query), 4);
  EXPECT_EQ(kv.stats().num_cached_blocks, 4);

  // A live hit takes C's blocks out of the free queue: they cannot be evicted.
  Seq c2{c_query, {}, {}};
  EXPECT_EQ(kv.AcquireCachedPrefix(c2.tokens, &c2.table, &c2.hashes), 8);
  EXPECT_EQ(kv.num_free_blocks(), 2);
  ASSERT_TRUE(kv.Grow(&d, 13).ok());
  EXPECT_EQ(d, (std::vector<int>{1, 3, 2, 0}));
  EXPECT_EQ(kv.Grow(&d, 17).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(kv.stats().num_cached_blocks, 2);
  kv.Free(&c2.table, &c2.hashes);
  EXPECT_EQ(Probe(kv, c_query), 8);
  EXPECT_EQ(Probe(kv, a_query), 0);
  EXPECT_EQ(Probe(kv, b_query), 0);
  kv.Free(&d, &dh);
  EXPECT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
}

TEST(KvCacheManagerTest, PartialBlockIsReusedBeforeCachedOnes) {
  KvCacheManager kv(4, 4, true);
  Seq a{Iota(10, 0), {}, {}};
  RunAndCache(kv, a);
  EXPECT_EQ(a.table, (std::vector<int>{0, 1, 2}));
  kv.Free(&a.table, &a.hashes);
  // Block 2 holds only 2 tokens: it goes ahead of block 3, free all along.
  std::vector<int> d;
  std::vector<uint64_t> dh;
  ASSERT_TRUE(kv.Grow(&d, 8).ok());
  EXPECT_EQ(d, (std::vector<int>{2, 3}));
  EXPECT_EQ(Probe(kv, Iota(10, 0)), 8);
  kv.Free(&d, &dh);
}

TEST(KvCacheManagerTest, LookupComparesTokens) {
  KvCacheManager kv(8, 4, true);
  Seq a{{1, 2, 3, 4, 5, 6, 7, 8, 9}, {}, {}};
  RunAndCache(kv, a);
  kv.Free(&a.table, &a.hashes);
  EXPECT_EQ(Probe(kv, {1, 2, 3, 4, 5, 6, 7, 8, 0}), 8);
  // Same parent, different contents in the second block: a miss there.
  EXPECT_EQ(Probe(kv, {1, 2, 3, 4, 5, 6, 7, 9, 0}), 4);
  EXPECT_EQ(Probe(kv, {1, 2, 3, 4, 8, 7, 6, 5, 0}), 4);
  // The same second block under a different parent is a different key.
  EXPECT_EQ(Probe(kv, {0, 2, 3, 4, 5, 6, 7, 8, 0}), 0);
  EXPECT_EQ(Probe(kv, {5, 6, 7, 8, 5, 6, 7, 8, 0}), 0);
}

TEST(KvCacheManagerTest, PrefixCachingOff) {
  KvCacheManager kv(8, 4, false);
  Seq a{Iota(10, 0), {}, {}};
  EXPECT_EQ(RunAndCache(kv, a), 0);
  EXPECT_TRUE(a.hashes.empty());
  kv.Free(&a.table, &a.hashes);
  Seq b{Iota(10, 0), {}, {}};
  EXPECT_EQ(kv.AcquireCachedPrefix(b.tokens, &b.table, &b.hashes), 0);
  EXPECT_TRUE(b.table.empty());
  const KvCacheStats s = kv.stats();
  EXPECT_EQ(s.num_cached_blocks, 0);
  EXPECT_EQ(s.num_used_blocks, 0);
  EXPECT_EQ(s.prefix_queried_tokens, 0);
  EXPECT_EQ(s.prefix_hit_tokens, 0);
}

// Random workload on a tiny pool; token sequences share a few stems so that
// prefixes repeat. A shadow copy of each block's contents checks that every
// hit returns blocks holding exactly the queried tokens.
TEST(KvCacheManagerTest, RandomizedOperationsKeepInvariants) {
  constexpr int kBlockSize = 4;
  constexpr int kNumBlocks = 24;
  KvCacheManager kv(kNumBlocks, kBlockSize, true);
  std::mt19937 rng(1234);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  std::vector<std::vector<int>> stems;
  for (int i = 0; i < 4; ++i) {
    std::vector<int> stem(uniform(4, 16));
    for (int& t : stem) t = uniform(0, 2);
    stems.push_back(stem);
  }
  struct Live {
    Seq seq;
    int computed = 0;
  };
  std::vector<Live> live;
  std::map<int, std::vector<int>> written;  // block -> tokens computed into it
  int64_t total_hits = 0;

  auto compute = [&](Live& l, int upto) {
    for (int pos = l.computed; pos < upto; ++pos) {
      std::vector<int>& w = written[l.seq.table[pos / kBlockSize]];
      if (pos % kBlockSize == 0) w.clear();
      w.push_back(l.seq.tokens[pos]);
    }
    l.computed = upto;
    kv.CacheFullBlocks(l.seq.tokens, l.computed, l.seq.table, &l.seq.hashes);
  };

  for (int op = 0; op < 5000; ++op) {
    const int kind = uniform(0, 9);
    if (kind < 4 || live.empty()) {  // admit a new sequence
      Live l;
      l.seq.tokens = stems[uniform(0, static_cast<int>(stems.size()) - 1)];
      for (int n = uniform(0, 8); n > 0; --n) l.seq.tokens.push_back(uniform(0, 2));
      if (l.seq.tokens.empty()) l.seq.tokens.push_back(0);
      const int hit = kv.AcquireCachedPrefix(l.seq.tokens, &l.seq.table, &l.seq.hashes);
      ASSERT_EQ(hit % kBlockSize, 0);
      ASSERT_LT(hit, static_cast<int>(l.seq.tokens.size()));
      total_hits += hit;
      for (int i = 0; i < hit / kBlockSize; ++i) {
        const std::vector<int> expect(l.seq.tokens.begin() + i * kBlockSize,
                                      l.seq.tokens.begin() + (i + 1) * kBlockSize);
        ASSERT_EQ(written[l.seq.table[i]], expect) << "hit on a block with other contents";
      }
      l.computed = hit;
      if (!kv.Grow(&l.seq.table, static_cast<int>(l.seq.tokens.size())).ok()) {
        kv.Free(&l.seq.table, &l.seq.hashes);
      } else {
        compute(l, uniform(hit, static_cast<int>(l.seq.tokens.size())));
        live.push_back(std::move(l));
      }
    } else if (kind < 8) {  // a step: finish the prefill or decode one token
      Live& l = live[uniform(0, static_cast<int>(live.size()) - 1)];
      if (l.computed == static_cast<int>(l.seq.tokens.size())) {
        l.seq.tokens.push_back(uniform(0, 2));
        if (!kv.Grow(&l.seq.table, static_cast<int>(l.seq.tokens.size())).ok()) {
          l.seq.tokens.pop_back();
          continue;
        }
      }
      compute(l, static_cast<int>(l.seq.tokens.size()));
    } else {  // finish or preempt
      const int i = uniform(0, static_cast<int>(live.size()) - 1);
      kv.Free(&live[i].seq.table, &live[i].seq.hashes);
      live.erase(live.begin() + i);
    }

    ASSERT_TRUE(kv.CheckInvariants().ok()) << "op " << op << ": " << kv.CheckInvariants();
    std::vector<int> refs(kNumBlocks, 0);
    for (const Live& l : live) {
      for (int b : l.seq.table) ++refs[b];
    }
    int used = 0;
    for (int b = 0; b < kNumBlocks; ++b) {
      ASSERT_EQ(kv.ref_count(b), refs[b]) << "op " << op << " block " << b;
      used += refs[b] > 0;
    }
    ASSERT_EQ(kv.stats().num_used_blocks, used);
  }

  for (Live& l : live) kv.Free(&l.seq.table, &l.seq.hashes);
  ASSERT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
  const KvCacheStats s = kv.stats();
  EXPECT_EQ(s.num_used_blocks, 0);
  EXPECT_EQ(kv.num_free_blocks(), kNumBlocks);
  EXPECT_GT(s.num_cached_blocks, 0);
  EXPECT_EQ(s.prefix_hit_tokens, total_hits);
  EXPECT_GT(total_hits, 0);  // the workload does exercise the cache
}

}  // namespace
}  // namespace inferd

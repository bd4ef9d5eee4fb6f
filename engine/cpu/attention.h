// Attention over a sequence's paged K/V cache, streamed: K and V rows are
// read once per tile of 32 keys, with an online softmax (a running maximum
// rescales what is summed so far when a tile raises it), so nothing the
// length of the context is held. A run of consecutive queries of one
// sequence and head (a prefill chunk) shares each tile: its rows come from
// memory once and from L1 for the other queries, instead of once per query.
// AVX-512 or AVX2 for head_dim a multiple of 16 or 8 up to 256, plain
// loops otherwise (AttentionTiles). The cache holds float32 or float16
// rows; float16 halves the bytes read.
//
// Each query's operations depend only on its own q, its context and
// head_dim: never on the run it is in, the batch or the thread, which keeps
// the CPU backend batch-invariant (a query alone and inside a run of 16 get
// the same bits).
#pragma once

#include <cstddef>
#include <cstdint>

namespace inferd::cpu {

// Rows of one KV head of one sequence: row p is at
// data + block_table[p / block_size] * block_stride + (p % block_size) * row_stride.
// T is float or uint16_t (an IEEE binary16 half: the float16 KV cache).
template <typename T>
struct PagedRows {
  const T* data;        // the layer's pool, offset to the KV head
  const int* block_table;
  int block_size;
  size_t block_stride;  // elements between consecutive physical blocks
  size_t row_stride;    // elements between consecutive slots of a block
};

// The most queries one run takes.
inline constexpr int kMaxQueryRun = 16;

// Queries i in [0, count) of one head: q + i * q_stride attends over the
// first first_context + i rows, into out + i * out_stride.
struct QueryRun {
  const float* q;
  size_t q_stride;
  float* out;
  size_t out_stride;
  int count;  // 1 .. kMaxQueryRun
  int first_context;
};

// The code AttendPaged runs. kBest: AVX-512 tiles where the CPU backend's
// kernel set is the AVX-512 one (kernels.h: the CPU has it and
// INFERD_CPU_KERNELS names no other set) and head_dim is a multiple of 16
// up to 256; else AVX2 where the build has it and head_dim is a multiple of
// 8 up to 256; else plain loops. kNoAvx512: the same without AVX-512. The
// AVX-512 and AVX2 tiles give the same bits (tests compare them).
enum class AttentionTiles { kBest, kNoAvx512 };

// out_i[head_dim] = softmax(q_i · K[0, context_i) / sqrt(head_dim)) · V[0, context_i).
void AttendPaged(const QueryRun& run, const PagedRows<float>& keys, const PagedRows<float>& values, int head_dim,
                 AttentionTiles tiles = AttentionTiles::kBest);
void AttendPaged(const QueryRun& run, const PagedRows<uint16_t>& keys, const PagedRows<uint16_t>& values,
                 int head_dim, AttentionTiles tiles = AttentionTiles::kBest);

// dst[0, n) = src[0, n) as halves, rounded to nearest even (the float16
// cache's rows; the same rounding as FloatToHalf on every CPU).
void FloatsToHalves(const float* src, int n, uint16_t* dst);

}  // namespace inferd::cpu

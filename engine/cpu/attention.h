// One query head's attention over a sequence's paged K/V cache, streamed:
// K and V rows are read once, in tiles, with an online softmax (a running
// maximum rescales what is summed so far when a tile raises it), so nothing
// the length of the context is held. AVX2 for head_dim a multiple of 8 up to
// 256 (q and the output stay in registers), plain loops otherwise. The cache
// holds float32 or float16 rows; float16 halves the bytes attention reads.
//
// The operations depend only on q, the context and head_dim: never on the
// batch or the thread, which keeps the CPU backend batch-invariant.
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

// out[head_dim] = softmax(q · K[0, context) / sqrt(head_dim)) · V[0, context).
void AttendPaged(const float* q, const PagedRows<float>& keys, const PagedRows<float>& values, int context,
                 int head_dim, float* out);
void AttendPaged(const float* q, const PagedRows<uint16_t>& keys, const PagedRows<uint16_t>& values, int context,
                 int head_dim, float* out);

// dst[0, n) = src[0, n) as halves, rounded to nearest even (the float16
// cache's rows; the same rounding as FloatToHalf on every CPU).
void FloatsToHalves(const float* src, int n, uint16_t* dst);

}  // namespace inferd::cpu

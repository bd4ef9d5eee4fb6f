// One query head's attention over a sequence's paged K/V cache, streamed:
// K and V rows are read once, in tiles, with an online softmax (a running
// maximum rescales what is summed so far when a tile raises it), so nothing
// the length of the context is held. AVX2 for head_dim a multiple of 8 up to
// 256 (q and the output stay in registers), plain loops otherwise.
//
// The operations depend only on q, the context and head_dim: never on the
// batch or the thread, which keeps the CPU backend batch-invariant.
#pragma once

#include <cstddef>

namespace inferd::cpu {

// Rows of one KV head of one sequence: row p is at
// data + (block_table[p / block_size] * block_size + p % block_size) * stride.
struct PagedRows {
  const float* data;       // the layer's pool, offset to the KV head
  const int* block_table;
  int block_size;
  size_t stride;           // floats between consecutive slots (kv_dim)
};

// out[head_dim] = softmax(q · K[0, context) / sqrt(head_dim)) · V[0, context).
void AttendPaged(const float* q, const PagedRows& keys, const PagedRows& values, int context, int head_dim,
                 float* out);

}  // namespace inferd::cpu

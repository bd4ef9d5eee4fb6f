// The tensor-core prefill attention kernel (16-bit dtypes, head dim 64 or
// 128), FlashAttention-2 style with mma.sync m16n8k16: each of 4 warps owns
// 16 of the block's 64 query rows, keeps its query fragments and output
// accumulators in registers, turns its score accumulators into the
// probability operand of the PV product without leaving registers, and
// reads keys (32-bit fragment loads) and values (ldmatrix.trans) from
// shared memory in tiles of 64. Included by attention_prefill.cu only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "cuda/attention_plan.h"
#include "cuda/common.cuh"

namespace inferd::cuda::prefill_mma {

constexpr int kThreads = 128;
constexpr int kKeyTile = 64;
static_assert(kThreads / 32 * 16 == kPrefillRows, "4 warps of 16 query rows");

// D += A (16x16, row) * B (16x8, col), fp32 accumulators.
template <typename T>
__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Four 8x8 b16 matrices, transposed: lanes 8m..8m+7 give the row addresses
// of matrix m, and register m holds this lane's fragment of it.
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* smem_row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}

// Two floats rounded to T, packed (lo in the low half), and their rounded values.
template <typename T>
__device__ __forceinline__ uint32_t Pack(float lo, float hi, float* rounded_sum) {
  const T a = FromFloat<T>(lo);
  const T b = FromFloat<T>(hi);
  *rounded_sum += ToFloat<T>(a) + ToFloat<T>(b);
  uint16_t ua, ub;
  memcpy(&ua, &a, 2);
  memcpy(&ub, &b, 2);
  return static_cast<uint32_t>(ua) | (static_cast<uint32_t>(ub) << 16);
}

__device__ __forceinline__ uint32_t Load32(const void* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Shared memory: keys [64][HD + 8] (first holding the queries), values
// [64][HD + 8]; the padding makes every fragment load conflict-free.
template <typename T, int HD>
constexpr size_t SharedBytes() {
  return 2 * sizeof(T) * kKeyTile * (HD + 8);
}

template <typename T, int HD, typename Params>
__global__ void __launch_bounds__(kThreads) AttentionPrefillMmaKernel(Params p) {
  static_assert(sizeof(T) == 2 && HD % 16 == 0);
  constexpr int LD = HD + 8;          // shared row stride (elements)
  constexpr int kSteps = HD / 16;     // k-steps of Q·Kᵀ
  constexpr int kDimBlocks = HD / 8;  // n-blocks of the output
  constexpr int kKeyBlocks = kKeyTile / 8;
  constexpr int V = kVec<T>;
  constexpr int kVectors = HD / V;

  const int seq = p.batch.prefill_tiles[2 * blockIdx.x];
  const int first_query = p.batch.prefill_tiles[2 * blockIdx.x + 1];
  const int kv_head = blockIdx.y / p.head_chunks;
  const int head_chunk = blockIdx.y % p.head_chunks;
  const int first_head = kv_head * p.group + head_chunk * kMaxHeadsPerCta;
  const int heads = min(kMaxHeadsPerCta, p.group - head_chunk * kMaxHeadsPerCta);
  const int num_queries = p.batch.seq_num_q[seq];
  const int context = p.batch.seq_ctx[seq];
  const int64_t first_token = static_cast<int64_t>(p.batch.seq_q_start[seq]) + first_query;
  const int* block_table = p.batch.block_tables + p.batch.seq_bt_start[seq];
  const int tile_tokens = min(p.tokens_per_tile, num_queries - first_query);
  const int rows = tile_tokens * heads;  // row = token_in_tile * heads + head
  const int first_pos = context - num_queries + first_query;
  const int last_pos = first_pos + tile_tokens - 1;

  extern __shared__ __align__(16) unsigned char smem_mma[];
  T* k_s = reinterpret_cast<T*>(smem_mma);
  T* v_s = k_s + kKeyTile * LD;

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int g = lane >> 2;  // fragment row (and column of B)
  const int t = lane & 3;   // fragment column pair
  const int row0 = warp * 16;

  // Queries through shared memory into this warp's A fragments.
  for (int i = tid; i < kPrefillRows * kVectors; i += kThreads) {
    const int r = i / kVectors;
    const int j = i % kVectors;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < rows) {
      v = *reinterpret_cast<const uint4*>(p.qkv + (first_token + r / heads) * p.qkv_stride +
                                          static_cast<int64_t>(first_head + r % heads) * HD + j * V);
    }
    *reinterpret_cast<uint4*>(k_s + r * LD + j * V) = v;
  }
  __syncthreads();
  uint32_t qa[kSteps][4];
#pragma unroll
  for (int ks = 0; ks < kSteps; ++ks) {
    const T* base = k_s + (row0 + g) * LD + ks * 16 + 2 * t;
    qa[ks][0] = Load32(base);
    qa[ks][1] = Load32(base + 8 * LD);
    qa[ks][2] = Load32(base + 8);
    qa[ks][3] = Load32(base + 8 * LD + 8);
  }

  // Positions of this lane's two rows (g and g + 8); -1: no such row.
  int row_pos[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + g + 8 * h;
    row_pos[h] = row < rows ? first_pos + row / heads : -1;
  }
  const int warp_last_pos = row0 < rows ? first_pos + min(row0 + 15, rows - 1) / heads : -1;
  const float scale = 1.0f / p.sqrt_head_dim;
  const int kv_stride = p.n_kv_heads * HD;

  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  float o[kDimBlocks][4];
#pragma unroll
  for (int nd = 0; nd < kDimBlocks; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) o[nd][i] = 0.0f;

  for (int key0 = 0; key0 <= last_pos; key0 += kKeyTile) {
    __syncthreads();  // the previous tile (or the queries) is no longer read
    for (int i = tid; i < kKeyTile * kVectors; i += kThreads) {
      const int c = i / kVectors;
      const int j = i % kVectors;
      const int pos = key0 + c;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (pos <= last_pos) {
        const int64_t slot =
            static_cast<int64_t>(block_table[pos / p.block_size]) * p.block_size + pos % p.block_size;
        const int64_t offset = slot * kv_stride + static_cast<int64_t>(kv_head) * HD + j * V;
        kv = *reinterpret_cast<const uint4*>(p.k_pool + offset);
        vv = *reinterpret_cast<const uint4*>(p.v_pool + offset);
      }
      *reinterpret_cast<uint4*>(k_s + c * LD + j * V) = kv;
      *reinterpret_cast<uint4*>(v_s + c * LD + j * V) = vv;
    }
    __syncthreads();
    if (key0 > warp_last_pos) continue;  // every key of this tile is in this warp's future

    // Scores S = Q·Kᵀ for 16 rows x 64 keys.
    float s[kKeyBlocks][4];
#pragma unroll
    for (int nb = 0; nb < kKeyBlocks; ++nb) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[nb][i] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < kSteps; ++ks) {
        const T* kb = k_s + (nb * 8 + g) * LD + ks * 16 + 2 * t;
        Mma<T>(s[nb], qa[ks], Load32(kb), Load32(kb + 8));
      }
    }

    // Causal mask and the online softmax, per row (4 lanes share a row).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < kKeyBlocks; ++nb) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = key0 + nb * 8 + 2 * t + (i & 1);
        const float v = key <= row_pos[i >> 1] ? s[nb][i] * scale : -INFINITY;
        s[nb][i] = v;
        tile_max[i >> 1] = fmaxf(tile_max[i >> 1], v);
      }
    }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
      const float new_max = fmaxf(row_max[h], tile_max[h]);
      alpha[h] = new_max == -INFINITY ? 1.0f : expf(row_max[h] - new_max);
      row_max[h] = new_max;
    }
    // Probabilities, rounded to T as the PV product sees them (the row sums
    // use the same rounded values), packed straight into A fragments: keys
    // 16 kk .. 16 kk + 15 are score blocks 2 kk and 2 kk + 1.
    uint32_t pa[kKeyBlocks / 2][4];
    float tile_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nb = 0; nb < kKeyBlocks; ++nb) {
      float e[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float m = row_max[i >> 1];
        e[i] = (m == -INFINITY || s[nb][i] == -INFINITY) ? 0.0f : expf(s[nb][i] - m);
      }
      const uint32_t lo = Pack<T>(e[0], e[1], &tile_sum[0]);
      const uint32_t hi = Pack<T>(e[2], e[3], &tile_sum[1]);
      pa[nb / 2][(nb & 1) * 2] = lo;
      pa[nb / 2][(nb & 1) * 2 + 1] = hi;
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      tile_sum[h] += __shfl_xor_sync(0xffffffffu, tile_sum[h], 1);
      tile_sum[h] += __shfl_xor_sync(0xffffffffu, tile_sum[h], 2);
      row_sum[h] = row_sum[h] * alpha[h] + tile_sum[h];
    }
#pragma unroll
    for (int nd = 0; nd < kDimBlocks; ++nd) {
      o[nd][0] *= alpha[0];
      o[nd][1] *= alpha[0];
      o[nd][2] *= alpha[1];
      o[nd][3] *= alpha[1];
    }

    // O += P·V; ldmatrix.trans turns row-major values into B fragments
    // (lanes 0-15: keys of this k-step at dims 8 nd, lanes 16-31: at 8 nd + 8).
#pragma unroll
    for (int kk = 0; kk < kKeyBlocks / 2; ++kk) {
#pragma unroll
      for (int nd = 0; nd < kDimBlocks; nd += 2) {
        uint32_t b[4];
        LdMatrixX4Trans(b, v_s + (kk * 16 + (lane & 15)) * LD + (nd + (lane >> 4)) * 8);
        Mma<T>(o[nd], pa[kk], b[0], b[1]);
        Mma<T>(o[nd + 1], pa[kk], b[2], b[3]);
      }
    }
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + g + 8 * h;
    if (row >= rows) continue;
    T* out = p.out + (first_token + row / heads) * p.out_stride + static_cast<int64_t>(first_head + row % heads) * HD;
    const float inv = 1.0f / row_sum[h];
    float unused = 0.0f;
#pragma unroll
    for (int nd = 0; nd < kDimBlocks; ++nd) {
      *reinterpret_cast<uint32_t*>(out + nd * 8 + 2 * t) =
          Pack<T>(o[nd][2 * h] * inv, o[nd][2 * h + 1] * inv, &unused);
    }
  }
}

}  // namespace inferd::cuda::prefill_mma

// Paged attention for decode: one new query token per sequence over its
// whole cached context, flash-decoding style. A thread block takes one KV
// head of one sequence, all the query heads that share it (up to 8), and one
// split of the context; it reads each key and value row of that split once,
// with 16-byte loads, in tiles of kTile tokens with an online softmax. The
// tile's cache slots are looked up in the block table once, into shared
// memory, before its loads (not per row in the key and value loops). When
// the plan splits the context, a merge kernel combines the splits' partial
// outputs by their log-sum-exp.
#include <cmath>

#include "cuda/attention_params.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 128;  // context tokens scored per pass over shared memory

// The shared attention parameters (attention_params.h) and decode's own.
template <typename T>
struct DecodeParams : AttentionParams<T> {
  int n_heads;
  int num_splits;
  float* partial_out;
  float* partial_lse;
};

// Vectors of a row each thread handles, at most: one, except fp32 rows of
// more than 32 vectors (head_dim > 128).
template <typename T, int HD>
__host__ __device__ constexpr int MaxVectorsPerThread() {
  if constexpr (HD > 0) {
    constexpr int vectors = HD / kVec<T>;
    constexpr int threads = vectors < 32 ? NextPow2(vectors) : 32;
    return (vectors + threads - 1) / threads;
  } else {
    return sizeof(T) == 4 ? 2 : 1;
  }
}

__host__ __device__ inline int ThreadsPerRow(int vectors_per_row) {
  return vectors_per_row < 32 ? NextPow2(vectors_per_row) : 32;
}

// G: the most query heads per block this instantiation handles (registers
// hold a query slice and an accumulator per head).
template <typename T, int HD, int G>
__global__ void __launch_bounds__(kThreads) AttentionDecodeKernel(DecodeParams<T> p) {
  constexpr int V = kVec<T>;
  constexpr int kMaxVpt = MaxVectorsPerThread<T, HD>();
  const int hd = HD > 0 ? HD : p.head_dim;
  const int vectors_per_row = hd / V;
  const int tpr = ThreadsPerRow(vectors_per_row);
  const int rows_per_pass = kThreads / tpr;

  const int split = blockIdx.x;
  const int kv_head = blockIdx.y / p.head_chunks;
  const int head_chunk = blockIdx.y % p.head_chunks;
  const int first_head = kv_head * p.group + head_chunk * kMaxHeadsPerCta;
  const int heads = min(kMaxHeadsPerCta, p.group - head_chunk * kMaxHeadsPerCta);
  const int decode_index = blockIdx.z;
  const int seq = p.batch.decode_seqs[decode_index];
  const int context = p.batch.seq_ctx[seq];
  const int64_t q_token = p.batch.seq_q_start[seq];
  const int* block_table = p.batch.block_tables + p.batch.seq_bt_start[seq];
  const int chunk = *p.batch.decode_chunk;
  const int begin = split * chunk;
  const int end = min(context, begin + chunk);
  const int64_t lse_base = (static_cast<int64_t>(decode_index) * p.n_heads + first_head) * p.num_splits + split;

  if (begin >= end) {  // an empty split of a short context: nothing to merge
    if (threadIdx.x < heads) p.partial_lse[lse_base + static_cast<int64_t>(threadIdx.x) * p.num_splits] = -INFINITY;
    return;
  }

  extern __shared__ __align__(16) float smem[];
  float* q_s = smem;                        // [heads][hd]
  float* score_s = q_s + heads * hd;        // [heads][kTile]
  float* max_s = score_s + heads * kTile;   // [heads]: running max
  float* sum_s = max_s + kMaxHeadsPerCta;   // [heads]: running sum of exp
  float* alpha_s = sum_s + kMaxHeadsPerCta; // [heads]: this tile's rescale
  float* reduce_s = alpha_s + kMaxHeadsPerCta;  // [kWarps][heads][hd]
  int* slot_s = reinterpret_cast<int*>(reduce_s + kWarps * heads * hd);  // [kTile]: the tile's cache slots

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int row_lane = tid % tpr;
  const int row = tid / tpr;

  const T* q = p.qkv + q_token * p.qkv_stride + static_cast<int64_t>(first_head) * hd;
  for (int i = tid; i < heads * hd; i += kThreads) q_s[i] = ToFloat<T>(q[i]);
  if (tid < heads) {
    max_s[tid] = -INFINITY;
    sum_s[tid] = 0.0f;
  }
  __syncthreads();

  // Each thread keeps the query slices it multiplies in registers.
  float qr[G][kMaxVpt][V];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int k = 0; k < kMaxVpt; ++k) {
      const int j = row_lane + k * tpr;
#pragma unroll
      for (int e = 0; e < V; ++e) qr[g][k][e] = (g < heads && j < vectors_per_row) ? q_s[g * hd + j * V + e] : 0.0f;
    }

  const int kv_stride = p.n_kv_heads * hd;
  // Row r of the current tile in a pool (slot_s holds the tile's slots).
  auto row_of = [&](const T* pool, int r) {
    return pool + static_cast<int64_t>(slot_s[r]) * kv_stride + static_cast<int64_t>(kv_head) * hd;
  };

  float acc[G][kMaxVpt][V];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int k = 0; k < kMaxVpt; ++k)
#pragma unroll
      for (int e = 0; e < V; ++e) acc[g][k][e] = 0.0f;

  for (int tile_start = begin; tile_start < end; tile_start += kTile) {
    const int tile_len = min(kTile, end - tile_start);
    // The previous tile's readers of slot_s finished at its last barrier.
    for (int r = tid; r < tile_len; r += kThreads) {
      const int pos = tile_start + r;
      slot_s[r] = block_table[pos / p.block_size] * p.block_size + pos % p.block_size;
    }
    __syncthreads();

    // Scores: a group of tpr threads per key row, for every head at once.
    // The loop count is the same for every thread, so the shuffles below
    // always see the whole warp.
    for (int base = 0; base < tile_len; base += 2 * rows_per_pass) {
      float dot[2][G];
      float kv[2][kMaxVpt][V];
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int r = base + u * rows_per_pass + row;
#pragma unroll
        for (int g = 0; g < G; ++g) dot[u][g] = 0.0f;
#pragma unroll
        for (int k = 0; k < kMaxVpt; ++k) {
          const int j = row_lane + k * tpr;
          if (r < tile_len && j < vectors_per_row) {
            LoadVec<T>(row_of(p.k_pool, r) + j * V, kv[u][k]);
          } else {
#pragma unroll
            for (int e = 0; e < V; ++e) kv[u][k][e] = 0.0f;
          }
        }
      }
#pragma unroll
      for (int u = 0; u < 2; ++u) {
#pragma unroll
        for (int k = 0; k < kMaxVpt; ++k) {
          const int j = row_lane + k * tpr;
          if (j >= vectors_per_row) continue;
#pragma unroll
          for (int g = 0; g < G; ++g) {
            if (g >= heads) break;
#pragma unroll
            for (int e = 0; e < V; ++e) dot[u][g] += qr[g][k][e] * kv[u][k][e];
          }
        }
#pragma unroll
        for (int g = 0; g < G; ++g) {
          if (g >= heads) break;
          for (int offset = tpr >> 1; offset > 0; offset >>= 1) {
            dot[u][g] += __shfl_xor_sync(0xffffffffu, dot[u][g], offset);
          }
        }
        const int r = base + u * rows_per_pass + row;
        if (r < tile_len && row_lane == 0) {
#pragma unroll
          for (int g = 0; g < G; ++g) {
            if (g < heads) score_s[g * kTile + r] = dot[u][g] / p.sqrt_head_dim;
          }
        }
      }
    }
    __syncthreads();

    // Online softmax: one warp per head.
    for (int g = warp; g < heads; g += kWarps) {
      float* s = score_s + g * kTile;
      float tile_max = -INFINITY;
      for (int r = lane; r < tile_len; r += 32) tile_max = fmaxf(tile_max, s[r]);
      tile_max = WarpMax(tile_max);
      const float old_max = max_s[g];
      const float new_max = fmaxf(old_max, tile_max);
      float sum = 0.0f;
      for (int r = lane; r < tile_len; r += 32) {
        const float e = expf(s[r] - new_max);
        s[r] = e;
        sum += e;
      }
      sum = WarpSum(sum);
      __syncwarp();
      if (lane == 0) {
        const float alpha = expf(old_max - new_max);  // 0 on the first tile
        alpha_s[g] = alpha;
        sum_s[g] = sum_s[g] * alpha + sum;
        max_s[g] = new_max;
      }
    }
    __syncthreads();

    // Values: each thread accumulates its vectors over every rows_per_pass-th row.
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (g >= heads) break;
      const float alpha = alpha_s[g];
#pragma unroll
      for (int k = 0; k < kMaxVpt; ++k)
#pragma unroll
        for (int e = 0; e < V; ++e) acc[g][k][e] *= alpha;
    }
#pragma unroll 2
    for (int r = row; r < tile_len; r += rows_per_pass) {
      const T* v_row = row_of(p.v_pool, r);
#pragma unroll
      for (int k = 0; k < kMaxVpt; ++k) {
        const int j = row_lane + k * tpr;
        if (j >= vectors_per_row) continue;
        float vv[V];
        LoadVec<T>(v_row + j * V, vv);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          if (g >= heads) break;
          const float weight = score_s[g * kTile + r];
#pragma unroll
          for (int e = 0; e < V; ++e) acc[g][k][e] += weight * vv[e];
        }
      }
    }
    __syncthreads();  // score_s is rewritten by the next tile
  }

  // Sum the row groups: within the warp by shuffles, across warps in shared memory.
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g >= heads) break;
#pragma unroll
    for (int k = 0; k < kMaxVpt; ++k) {
      const int j = row_lane + k * tpr;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        float v = acc[g][k][e];
        for (int offset = tpr; offset < 32; offset <<= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
        if (lane < tpr && j < vectors_per_row) reduce_s[(warp * heads + g) * hd + j * V + e] = v;
      }
    }
  }
  __syncthreads();

  for (int i = tid; i < heads * hd; i += kThreads) {
    const int g = i / hd;
    const int d = i % hd;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += reduce_s[(w * heads + g) * hd + d];
    o /= sum_s[g];
    if (p.num_splits == 1) {
      p.out[q_token * p.out_stride + static_cast<int64_t>(first_head + g) * hd + d] = FromFloat<T>(o);
    } else {
      p.partial_out[(lse_base + static_cast<int64_t>(g) * p.num_splits) * hd + d] = o;
    }
  }
  if (p.num_splits > 1 && tid < heads) {
    p.partial_lse[lse_base + static_cast<int64_t>(tid) * p.num_splits] = max_s[tid] + logf(sum_s[tid]);
  }
}

// Combines the splits of one (sequence, query head): weights exp(lse - max).
template <typename T>
__global__ void __launch_bounds__(kThreads) MergeSplitsKernel(DecodeParams<T> p) {
  const int decode_index = blockIdx.x;
  const int head = blockIdx.y;
  const int seq = p.batch.decode_seqs[decode_index];
  const int64_t q_token = p.batch.seq_q_start[seq];
  const int64_t base = (static_cast<int64_t>(decode_index) * p.n_heads + head) * p.num_splits;
  const float* lse = p.partial_lse + base;
  float max_lse = -INFINITY;
  for (int s = 0; s < p.num_splits; ++s) max_lse = fmaxf(max_lse, lse[s]);
  float total = 0.0f;
  for (int s = 0; s < p.num_splits; ++s) {
    if (lse[s] != -INFINITY) total += expf(lse[s] - max_lse);
  }
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < p.num_splits; ++s) {
      if (lse[s] != -INFINITY) o += expf(lse[s] - max_lse) * p.partial_out[(base + s) * p.head_dim + d];
    }
    p.out[q_token * p.out_stride + static_cast<int64_t>(head) * p.head_dim + d] = FromFloat<T>(o / total);
  }
}

size_t DecodeSharedBytes(int heads, int head_dim) {
  return sizeof(float) * (static_cast<size_t>(heads) * head_dim + static_cast<size_t>(heads) * kTile +
                          3 * kMaxHeadsPerCta + static_cast<size_t>(kWarps) * heads * head_dim) +
         sizeof(int) * kTile;
}

}  // namespace

cudaError_t LaunchAttentionDecode(const AttentionArgs& args, const DecodePlan& plan, int num_seqs,
                                  float* partial_out, float* partial_lse, cudaStream_t stream) {
  if (num_seqs <= 0) return cudaSuccess;
  const AttentionShape& shape = args.shape;
  return DispatchDtype(args.dtype, [&](auto dtype_tag) {
    using T = typename decltype(dtype_tag)::type;
    DecodeParams<T> p;
    FillAttentionParams(args, &p);
    p.n_heads = shape.n_heads;
    p.num_splits = plan.num_splits;
    p.partial_out = partial_out;
    p.partial_lse = partial_lse;
    const dim3 grid(plan.num_splits, shape.n_kv_heads * shape.head_chunks(), num_seqs);
    const size_t smem = DecodeSharedBytes(shape.heads_per_cta(), shape.head_dim);
    const int heads = shape.heads_per_cta();
    return DispatchHeadDim(shape.head_dim, [&](auto hd_tag) {
      constexpr int HD = decltype(hd_tag)::value;
      // Specialized head dims get per-head-count registers; the generic
      // kernel always holds kMaxHeadsPerCta.
      if constexpr (HD > 0) {
        if (heads == 1) {
          AttentionDecodeKernel<T, HD, 1><<<grid, kThreads, smem, stream>>>(p);
        } else if (heads == 2) {
          AttentionDecodeKernel<T, HD, 2><<<grid, kThreads, smem, stream>>>(p);
        } else if (heads <= 4) {
          AttentionDecodeKernel<T, HD, 4><<<grid, kThreads, smem, stream>>>(p);
        } else {
          AttentionDecodeKernel<T, HD, kMaxHeadsPerCta><<<grid, kThreads, smem, stream>>>(p);
        }
      } else {
        AttentionDecodeKernel<T, HD, kMaxHeadsPerCta><<<grid, kThreads, smem, stream>>>(p);
      }
      cudaError_t err = CheckLaunch(stream);
      if (err != cudaSuccess || plan.num_splits == 1) return err;
      MergeSplitsKernel<T><<<dim3(num_seqs, shape.n_heads), kThreads, 0, stream>>>(p);
      return CheckLaunch(stream);
    });
  });
}

cudaError_t PrepareAttentionDecode(Dtype dtype, const AttentionShape& shape) {
  const size_t smem = DecodeSharedBytes(shape.heads_per_cta(), shape.head_dim);
  // At most 8 heads of 256 dims: under the 48 KiB every device gives.
  return smem <= 48 * 1024 ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace inferd::cuda

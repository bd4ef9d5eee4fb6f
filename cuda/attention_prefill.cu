// Paged attention for prefill: causal attention of several new tokens of a
// sequence over its cached context, for sequences of any lengths in one
// launch. The KV append has already written this step's keys and values, so
// every key (earlier chunks, prefix-cache hits, this chunk) is read through
// the block table alike: chunked prefill and prefix reuse need nothing else.
//
// A thread block takes one tile of a sequence's new tokens times the query
// heads of one KV head (64 query rows) and streams that KV head's keys and
// values (up to the tile's last position) through shared memory with an
// online softmax per row. In fp16/bf16 with head dim 64 or 128 the products
// run on tensor cores (attention_prefill_mma.cuh); otherwise (fp32, for
// exactness, and other head dims) this file's CUDA-core kernel runs: each
// warp owns 8 rows, each lane one key of a 32-key tile for the scores and a
// slice of head_dim for the output.
#include <cmath>

#include "cuda/attention_params.h"
#include "cuda/attention_prefill_mma.cuh"
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = kPrefillRows / kWarps;  // 8
constexpr int kKeyTile = 32;                         // one key per lane
static_assert(kRowsPerWarp * kWarps == kPrefillRows);

// The shared attention parameters (attention_params.h) and prefill's own.
template <typename T>
struct PrefillParams : AttentionParams<T> {
  int tokens_per_tile;
};

// Output dims per lane (d = lane + 32 k): enough for head_dim 256.
template <int HD>
__host__ __device__ constexpr int DimsPerLane() {
  return HD > 0 ? (HD + 31) / 32 : 8;
}

// Shared memory: queries [64][hd], keys [32][hd + 4] (padded so that lanes
// reading different keys at one dim hit different banks), values [32][hd],
// and each warp's probabilities [8][32].
__host__ __device__ inline int KeyStride(int head_dim) { return head_dim + 4; }

size_t PrefillSharedBytes(int head_dim) {
  return sizeof(float) * (static_cast<size_t>(kPrefillRows) * head_dim +
                          static_cast<size_t>(kKeyTile) * KeyStride(head_dim) +
                          static_cast<size_t>(kKeyTile) * head_dim + static_cast<size_t>(kWarps) * kRowsPerWarp * kKeyTile);
}

// fp16/bf16 at head dim 64 or 128 run the tensor-core kernel.
template <typename T, int HD>
constexpr bool UsesTensorCores() {
  return sizeof(T) == 2 && (HD == 64 || HD == 128);
}

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads) AttentionPrefillKernel(PrefillParams<T> p) {
  constexpr int V = kVec<T>;
  constexpr int kDims = DimsPerLane<HD>();
  const int hd = HD > 0 ? HD : p.head_dim;
  const int vectors_per_row = hd / V;
  const int key_stride = KeyStride(hd);

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
  // Position of the tile's first token: new tokens end the context.
  const int first_pos = context - num_queries + first_query;
  const int last_pos = first_pos + tile_tokens - 1;

  extern __shared__ __align__(16) float smem[];
  float* q_s = smem;                               // [64][hd]
  float* k_s = q_s + kPrefillRows * hd;            // [32][key_stride]
  float* v_s = k_s + kKeyTile * key_stride;        // [32][hd]
  float* p_s = v_s + kKeyTile * hd;                // [warps][8][32]

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;

  for (int i = tid; i < kPrefillRows * vectors_per_row; i += kThreads) {
    const int r = i / vectors_per_row;
    const int j = i % vectors_per_row;
    float v[V];
    if (r < rows) {
      const int token = r / heads;
      const int head = first_head + r % heads;
      LoadVec<T>(p.qkv + (first_token + token) * p.qkv_stride + static_cast<int64_t>(head) * hd + j * V, v);
    } else {
#pragma unroll
      for (int e = 0; e < V; ++e) v[e] = 0.0f;
    }
#pragma unroll
    for (int e = 0; e < V; ++e) q_s[r * hd + j * V + e] = v[e];
  }

  // This warp's rows: their positions (-1 for rows past the tile, which
  // see no key) and running softmax state, the same in every lane.
  int row_pos[kRowsPerWarp];
  float row_max[kRowsPerWarp];
  float row_sum[kRowsPerWarp];
  float o[kRowsPerWarp][kDims];
  int warp_last_pos = -1;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int row = warp * kRowsPerWarp + r;
    row_pos[r] = row < rows ? first_pos + row / heads : -1;
    warp_last_pos = max(warp_last_pos, row_pos[r]);
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
#pragma unroll
    for (int k = 0; k < kDims; ++k) o[r][k] = 0.0f;
  }
  float* probs = p_s + warp * kRowsPerWarp * kKeyTile;
  const int kv_stride = p.n_kv_heads * hd;

  for (int key0 = 0; key0 <= last_pos; key0 += kKeyTile) {
    __syncthreads();  // the previous tile's keys and values are no longer read
    for (int i = tid; i < kKeyTile * vectors_per_row; i += kThreads) {
      const int c = i / vectors_per_row;
      const int j = i % vectors_per_row;
      const int pos = key0 + c;
      float kv[V], vv[V];
      if (pos <= last_pos) {
        const int64_t slot =
            static_cast<int64_t>(block_table[pos / p.block_size]) * p.block_size + pos % p.block_size;
        const int64_t offset = slot * kv_stride + static_cast<int64_t>(kv_head) * hd + j * V;
        LoadVec<T>(p.k_pool + offset, kv);
        LoadVec<T>(p.v_pool + offset, vv);
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) kv[e] = vv[e] = 0.0f;
      }
#pragma unroll
      for (int e = 0; e < V; ++e) {
        k_s[c * key_stride + j * V + e] = kv[e];
        v_s[c * hd + j * V + e] = vv[e];
      }
    }
    __syncthreads();
    if (key0 > warp_last_pos) continue;  // every key of this tile is in this warp's future

    // Scores of this lane's key against the warp's rows.
    float s[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = 0.0f;
    const float* k_row = k_s + lane * key_stride;
    const float* q_rows = q_s + warp * kRowsPerWarp * hd;
    for (int d = 0; d < hd; d += 4) {
      const float4 k4 = *reinterpret_cast<const float4*>(k_row + d);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float4 q4 = *reinterpret_cast<const float4*>(q_rows + r * hd + d);
        s[r] += q4.x * k4.x + q4.y * k4.y + q4.z * k4.z + q4.w * k4.w;
      }
    }

    const int key_pos = key0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const bool visible = key_pos <= row_pos[r];
      const float score = visible ? s[r] / p.sqrt_head_dim : -INFINITY;
      const float new_max = fmaxf(row_max[r], WarpMax(score));
      float prob = 0.0f;
      float alpha = 1.0f;
      if (new_max != -INFINITY) {  // else no key is visible to this row yet
        prob = visible ? expf(score - new_max) : 0.0f;
        alpha = expf(row_max[r] - new_max);
      }
      row_sum[r] = row_sum[r] * alpha + WarpSum(prob);
      row_max[r] = new_max;
#pragma unroll
      for (int k = 0; k < kDims; ++k) o[r][k] *= alpha;
      probs[r * kKeyTile + lane] = prob;
    }
    __syncwarp();

    const int keys = min(kKeyTile, last_pos - key0 + 1);
    for (int c = 0; c < keys; ++c) {
      float vv[kDims];
#pragma unroll
      for (int k = 0; k < kDims; ++k) {
        const int d = lane + 32 * k;
        vv[k] = d < hd ? v_s[c * hd + d] : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float prob = probs[r * kKeyTile + c];
#pragma unroll
        for (int k = 0; k < kDims; ++k) o[r][k] += prob * vv[k];
      }
    }
    __syncwarp();  // probs is rewritten by the next tile
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int row = warp * kRowsPerWarp + r;
    if (row >= rows) continue;
    const int64_t token = first_token + row / heads;
    T* out = p.out + token * p.out_stride + static_cast<int64_t>(first_head + row % heads) * hd;
    const float inv = 1.0f / row_sum[r];
#pragma unroll
    for (int k = 0; k < kDims; ++k) {
      const int d = lane + 32 * k;
      if (d < hd) out[d] = FromFloat<T>(o[r][k] * inv);
    }
  }
}

// Raises (never lowers: backends of several models may share the generic
// kernel) the kernel's dynamic shared-memory limit to `bytes`.
template <typename T, int HD>
cudaError_t RaisePrefillSharedLimit(size_t bytes) {
  cudaFuncAttributes attributes;
  const cudaError_t err = cudaFuncGetAttributes(&attributes, AttentionPrefillKernel<T, HD>);
  if (err != cudaSuccess) return err;
  if (static_cast<size_t>(attributes.maxDynamicSharedSizeBytes) >= bytes) return cudaSuccess;
  return cudaFuncSetAttribute(AttentionPrefillKernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

}  // namespace

cudaError_t LaunchAttentionPrefill(const AttentionArgs& args, const PrefillPlan& plan, int num_tiles,
                                   cudaStream_t stream) {
  if (num_tiles <= 0) return cudaSuccess;
  const AttentionShape& shape = args.shape;
  return DispatchDtype(args.dtype, [&](auto dtype_tag) {
    using T = typename decltype(dtype_tag)::type;
    PrefillParams<T> p;
    FillAttentionParams(args, &p);
    p.tokens_per_tile = plan.tokens_per_tile;
    const dim3 grid(num_tiles, shape.n_kv_heads * shape.head_chunks());
    return DispatchHeadDim(shape.head_dim, [&](auto hd_tag) {
      constexpr int HD = decltype(hd_tag)::value;
      if constexpr (UsesTensorCores<T, HD>()) {
        prefill_mma::AttentionPrefillMmaKernel<T, HD, PrefillParams<T>>
            <<<grid, prefill_mma::kThreads, prefill_mma::SharedBytes<T, HD>(), stream>>>(p);
      } else {
        AttentionPrefillKernel<T, HD><<<grid, kThreads, PrefillSharedBytes(shape.head_dim), stream>>>(p);
      }
      return CheckLaunch(stream);
    });
  });
}

cudaError_t PrepareAttentionPrefill(Dtype dtype, const AttentionShape& shape) {
  if (shape.head_dim > 32 * DimsPerLane<0>()) return cudaErrorInvalidValue;
  const size_t smem = PrefillSharedBytes(shape.head_dim);
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  int optin = 0;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  return DispatchDtype(dtype, [&](auto dtype_tag) {
    using T = typename decltype(dtype_tag)::type;
    return DispatchHeadDim(shape.head_dim, [&](auto hd_tag) {
      constexpr int HD = decltype(hd_tag)::value;
      if constexpr (UsesTensorCores<T, HD>()) {
        return cudaSuccess;  // under the 48 KiB every device gives
      } else {
        if (smem > static_cast<size_t>(optin)) return cudaErrorInvalidValue;
        return RaisePrefillSharedLimit<T, HD>(smem);
      }
    });
  });
}

}  // namespace inferd::cuda

// Device-side selection of each logit row's k candidates and log-sum-exp
// (engine/backend.h LogitCandidates), so that greedy and top-k requests copy
// k ids and logits to the host instead of a vocab-sized row (131 MB of fp32
// per step at batch 256 of a 128K vocabulary).
//
// One thread block per row: a pass for the maximum, one for the sum of
// exponentials, then a radix select of the k-th largest value over the
// float's order-preserving bits (four 8-bit digits, a histogram pass each),
// a gather of the values above it and of the ties at it (lowest ids first,
// as the host reference), and a rank sort of the k in shared memory.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

constexpr int kThreads = 512;

// Unsigned keys that order like the floats (NaN as -inf, as the host does).
__device__ __forceinline__ uint32_t OrderedKey(float v) {
  if (isnan(v)) v = -INFINITY;
  const uint32_t bits = __float_as_uint(v);
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return WarpMax(lane < (blockDim.x >> 5) ? scratch[lane] : -INFINITY);
}

__global__ void __launch_bounds__(kThreads)
    LogitCandidatesKernel(const float* __restrict__ logits, int vocab, int k, int* __restrict__ out_ids,
                          float* __restrict__ out_logits, float* __restrict__ out_lse) {
  __shared__ float scratch[32];
  __shared__ uint32_t hist[256];
  __shared__ uint32_t prefix_s;
  __shared__ int remaining_s;
  __shared__ int num_above;
  __shared__ int tie_offset[kThreads];
  __shared__ int cand_ids[kMaxCandidates];
  __shared__ float cand_logits[kMaxCandidates];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  const int tid = threadIdx.x;

  // log-sum-exp.
  float m = -INFINITY;
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = row[i];
    if (!isnan(v)) m = fmaxf(m, v);
  }
  m = BlockMax(m, scratch);
  float sum = 0.0f;
  if (isfinite(m)) {
    for (int i = tid; i < vocab; i += kThreads) {
      const float v = row[i];
      if (!isnan(v)) sum += expf(v - m);
    }
  }
  sum = BlockSum(sum, scratch);

  // The k-th largest key, a digit at a time from the top.
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kThreads) hist[i] = 0;
    __syncthreads();
    for (int i = tid; i < vocab; i += kThreads) {
      const uint32_t key = OrderedKey(row[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      int above = 0;
      for (int d = 255; d >= 0; --d) {
        const int n = static_cast<int>(hist[d]);
        if (above + n >= remaining) {
          prefix_s = prefix | (static_cast<uint32_t>(d) << shift);
          remaining_s = remaining - above;
          break;
        }
        above += n;
      }
    }
    __syncthreads();
    prefix = prefix_s;
    remaining = remaining_s;
    mask |= 255u << shift;
  }
  const uint32_t threshold = prefix;  // the k-th largest key; `remaining` of its ties are kept

  // Everything above the threshold (exactly k - remaining values).
  if (tid == 0) num_above = 0;
  __syncthreads();
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = row[i];
    if (OrderedKey(v) > threshold) {
      const int slot = atomicAdd(&num_above, 1);
      cand_ids[slot] = i;
      cand_logits[slot] = v;
    }
  }
  // The ties, lowest ids first: each thread scans a contiguous chunk, and a
  // prefix sum of their counts orders the chunks.
  const int chunk = (vocab + kThreads - 1) / kThreads;
  const int begin = min(vocab, tid * chunk), end = min(vocab, begin + chunk);
  int ties = 0;
  for (int i = begin; i < end; ++i) ties += OrderedKey(row[i]) == threshold ? 1 : 0;
  tie_offset[tid] = ties;
  __syncthreads();
  if (tid == 0) {
    int running = 0;
    for (int t = 0; t < kThreads; ++t) {
      const int n = tie_offset[t];
      tie_offset[t] = running;
      running += n;
    }
  }
  __syncthreads();
  const int first_tie_slot = k - remaining;
  int rank = tie_offset[tid];
  for (int i = begin; i < end && rank < remaining; ++i) {
    const float v = row[i];
    if (OrderedKey(v) == threshold) {
      cand_ids[first_tie_slot + rank] = i;
      cand_logits[first_tie_slot + rank] = v;
      ++rank;
    }
  }
  __syncthreads();

  // Rank sort of the k: by logit descending (NaN as -inf), ties lower id first.
  if (tid < k) {
    const uint32_t my_key = OrderedKey(cand_logits[tid]);
    const int my_id = cand_ids[tid];
    int position = 0;
    for (int j = 0; j < k; ++j) {
      const uint32_t key = OrderedKey(cand_logits[j]);
      position += (key > my_key || (key == my_key && cand_ids[j] < my_id)) ? 1 : 0;
    }
    out_ids[static_cast<int64_t>(blockIdx.x) * kMaxCandidates + position] = my_id;
    out_logits[static_cast<int64_t>(blockIdx.x) * kMaxCandidates + position] = cand_logits[tid];
  }
  if (tid == 0) out_lse[blockIdx.x] = isfinite(m) ? m + logf(sum) : m;
}

}  // namespace

cudaError_t LaunchLogitCandidates(const float* logits, int rows, int vocab, int k, int* ids, float* values,
                                  float* logsumexp, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (k < 1 || k > kMaxCandidates || k > vocab) return cudaErrorInvalidValue;
  LogitCandidatesKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, k, ids, values, logsumexp);
  return CheckLaunch(stream);
}

}  // namespace inferd::cuda

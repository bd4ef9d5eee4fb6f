// AVX2 + FMA + F16C kernels (x86-64-v3). Register tiles of MT activation
// rows against NT weight rows; each accumulator sees the same operations in
// any tile shape, which keeps results independent of how rows were grouped.
#include "engine/cpu/kernel_parts.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#include <cstring>

#include "engine/model/float16.h"

namespace inferd::cpu::parts {
namespace {

// The fixed horizontal reduction every dot product ends with.
inline float Reduce(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}

// Eight weights from element kk of a row, widened to fp32.
template <WeightType T>
inline __m256 LoadWeights(const char* row, int kk) {
  if constexpr (T == WeightType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + kk);
  } else if constexpr (T == WeightType::kF16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * kk)));
  } else {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * kk)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
}

template <WeightType T>
inline float Weight(const char* row, int k) {
  if constexpr (T == WeightType::kF32) return reinterpret_cast<const float*>(row)[k];
  else if constexpr (T == WeightType::kF16) return _cvtsh_ss(reinterpret_cast<const uint16_t*>(row)[k]);
  else return BFloat16ToFloat(reinterpret_cast<const uint16_t*>(row)[k]);
}

// kPrefetch: also fetch the next NT weight rows into cache as this tile
// steps through its own (see RowsAgainstWeights).
template <WeightType T, int MT, int NT, bool kPrefetch = false>
inline void FloatTile(const float* x, int ldx, const char* w, size_t ldw, int k, float* out, int ldo) {
  constexpr int kElementBytes = T == WeightType::kF32 ? 4 : 2;
  // Fully unrolled, so that the MT x NT accumulators live in registers.
  __m256 acc[MT][NT];
#pragma GCC unroll 4
  for (int i = 0; i < MT; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  const int k8 = k & ~7;
  for (int kk = 0; kk < k8; kk += 8) {
    __m256 wv[NT];
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) wv[j] = LoadWeights<T>(w + j * ldw, kk);
    if constexpr (kPrefetch) {
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) _mm_prefetch(w + (NT + j) * ldw + kk * kElementBytes, _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MT; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * ldx + kk);
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MT; ++i) {
    for (int j = 0; j < NT; ++j) {
      float s = Reduce(acc[i][j]);
      for (int kk = k8; kk < k; ++kk) s += x[i * ldx + kk] * Weight<T>(w + j * ldw, kk);
      out[i * ldo + j] = s;
    }
  }
}

// Per 32-element block: |w| (u8) times x with w's sign (s8) by maddubs —
// no saturation, as |w| <= 128 and |x| <= 127 — summed exactly to eight
// int32 lanes, then one fp32 multiply-add by the product of the scales.
template <int MT, int NT, bool kPrefetch = false>
inline void Q8Tile(const Activations& x, int row0, const char* w, size_t ldw, float* out, int ldo) {
  const int blocks = x.cols / kQ8_0BlockSize;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MT][NT];
#pragma GCC unroll 4
  for (int i = 0; i < MT; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int b = 0; b < blocks; ++b) {
    __m256i wq[NT], wabs[NT];
    float wd[NT];
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      const char* block = w + j * ldw + static_cast<size_t>(b) * kQ8_0BlockBytes;
      uint16_t d_bits;
      std::memcpy(&d_bits, block, 2);
      wd[j] = _cvtsh_ss(d_bits);
      wq[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
      wabs[j] = _mm256_sign_epi8(wq[j], wq[j]);
      if constexpr (kPrefetch) _mm_prefetch(block + NT * ldw, _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MT; ++i) {
      const size_t r = static_cast<size_t>(row0 + i);
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q8 + r * x.cols + b * kQ8_0BlockSize));
      const float xd = x.q8_scales[r * blocks + b];
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) {
        const __m256i pairs = _mm256_maddubs_epi16(wabs[j], _mm256_sign_epi8(xq, wq[j]));
        const __m256 sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(wd[j] * xd), sums, acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) out[i * ldo + j] = Reduce(acc[i][j]);
}

// Tile shapes (activation rows x weight rows) per weight type, so that the
// accumulators, the weight vectors and a broadcast x fit in 16 ymm
// registers. Measured with cpu_matmul_benchmark (2048x768, 512 rows, one
// thread): F32 3x4 runs 1.35x the 4x4 tiles (which spill), F16/BF16 4x3
// 1.1x; Q8_0 keeps 4x4 (4x2 and 3x3 are no faster, 2x4 is slower).
#ifndef INFERD_AVX2_TILES  // -D to try other shapes in the benchmark
#define INFERD_AVX2_TILES 3, 4, 4, 3, 4, 4
#endif
constexpr int kTiles[] = {INFERD_AVX2_TILES};

template <WeightType T>
constexpr int RowTile() {
  return T == WeightType::kF32 ? kTiles[0] : T == WeightType::kQ8_0 ? kTiles[4] : kTiles[2];
}

template <WeightType T>
constexpr int WeightTile() {
  return T == WeightType::kF32 ? kTiles[1] : T == WeightType::kQ8_0 ? kTiles[5] : kTiles[3];
}

template <WeightType T, int MT, int NT, bool kPrefetch>
inline void Tile(const Activations& x, int m, const char* w, size_t ldw, float* out, int ldo) {
  if constexpr (T == WeightType::kQ8_0) {
    Q8Tile<MT, NT, kPrefetch>(x, m, w, ldw, out + m * ldo, ldo);
  } else {
    const int k = x.cols;
    FloatTile<T, MT, NT, kPrefetch>(x.f32 + m * k, k, w, ldw, k, out + m * ldo, ldo);
  }
}

// Rows [m0, m1), a multiple of MT of them, against NT weight rows. Only
// the first row tile reads those from memory, the others find them in L1;
// so that the memory stream does not stall meanwhile (batched decode), the
// last row tile prefetches the next NT weight rows.
template <WeightType T, int MT, int NT>
inline void RowsAgainstTile(const Activations& x, int m0, int m1, const char* w, size_t ldw, float* out, int ldo) {
  for (int m = m0; m < m1; m += MT) {
    if (m + MT == m1) {
      Tile<T, MT, NT, true>(x, m, w, ldw, out, ldo);
    } else {
      Tile<T, MT, NT, false>(x, m, w, ldw, out, ldo);
    }
  }
}

// Rows [m0, m1) against the n_out weight rows in tiles of NT (1 for the
// rest).
template <WeightType T, int MT, int NT>
void RowsAgainstWeights(const Activations& x, int m0, int m1, const char* w, size_t ldw, int n_out, float* out,
                        int ldo) {
  int n = 0;
  for (; n + NT <= n_out; n += NT) RowsAgainstTile<T, MT, NT>(x, m0, m1, w + n * ldw, ldw, out + n, ldo);
  for (; n < n_out; ++n) RowsAgainstTile<T, MT, 1>(x, m0, m1, w + n * ldw, ldw, out + n, ldo);
}

template <WeightType T>
void Gemm(const Activations& x, const void* w, size_t w_row_bytes, int n_out, float* out, int ldo) {
  const char* wc = static_cast<const char*>(w);
  constexpr int kMT = RowTile<T>();
  const int full = x.rows - x.rows % kMT;
  RowsAgainstWeights<T, kMT, WeightTile<T>()>(x, 0, full, wc, w_row_bytes, n_out, out, ldo);
  // The rows left over (the whole of a batch-1 decode step) one at a time,
  // against four weight rows: four weight streams in flight.
  RowsAgainstWeights<T, 1, 4>(x, full, x.rows, wc, w_row_bytes, n_out, out, ldo);
}

}  // namespace

bool Avx2IsaKernels(IsaKernels* out) {
  *out = {{Gemm<WeightType::kF32>, Gemm<WeightType::kF16>, Gemm<WeightType::kBF16>, Gemm<WeightType::kQ8_0>}};
  return true;
}

}  // namespace inferd::cpu::parts

#else

namespace inferd::cpu::parts {
bool Avx2IsaKernels(IsaKernels*) { return false; }
}  // namespace inferd::cpu::parts

#endif

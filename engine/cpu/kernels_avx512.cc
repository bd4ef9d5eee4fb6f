// AVX-512 kernels (F, BW, VL, DQ, VNNI), compiled for those instructions in
// this file only: everything after the target pragma below, so that the rest
// of the build stays x86-64-v3 and the binary runs on AVX2-only CPUs, where
// kernels.cc never hands these out (CPUID check there).
//
// Float weights: tiles of MT activation rows against NT weight rows, one
// 16-lane fp32 accumulator per output element stepping through k by 16
// (a masked, zero-filled step for k % 16), then one fixed reduction tree
// per accumulator, whether it runs alone (Reduce1) or transposed with 15
// others (Reduce16). So tile shape and grouping never change a result.
//
// Float weights packed in 16-row panels (the CPU backend packs every
// matrix for this set, Q8_0 ones too): outer-product tiles of 8 activation
// rows against 3 panels, PanelGemm below. The row-major tiles stay for
// callers with row-major weights.
//
// Q8_0 weights in panels: Q8PanelGemm below. Row-major Q8_0 weights: two
// 32-element blocks per zmm. vpdpbusd multiplies u8 by s8, so the
// weights are offset to w + 128 (u8) and the offset's contribution,
// 128 * sum(x), is subtracted exactly in int32 by starting the dot product
// from -128 * sum(x) (itself a vpdpbusd, made once per activation row and
// GEMM call with the row's spread scales: Q8RowPair). Each
// int32 lane (four products) is then converted and multiply-added in fp32
// with the product of the two blocks' scales.
#include "engine/cpu/kernel_parts.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define INFERD_HAVE_AVX512_KERNELS 1
#endif

#ifdef INFERD_HAVE_AVX512_KERNELS

// GCC 12 flags the self-initialized _mm512_undefined_* values inside the
// intrinsics when they are inlined under a target pragma (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cstring>

#include "engine/cpu/aligned_vector.h"
#include "engine/model/float16.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")

namespace inferd::cpu::parts {
namespace {

// The canonical reduction of one accumulator v: s1[l] = v[l] + v[l + 8],
// s2[l] = s1[l] + s1[l + 4], s3[l] = s2[l] + s2[l + 2], s3[0] + s3[1].
inline float Reduce1(__m512 v) {
  const __m256 s1 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 s2 = _mm_add_ps(_mm256_castps256_ps128(s1), _mm256_extractf128_ps(s1, 1));
  const __m128 s3 = _mm_add_ps(s2, _mm_movehl_ps(s2, s2));
  return _mm_cvtss_f32(_mm_add_ss(s3, _mm_movehdup_ps(s3)));
}

// The same tree for 16 accumulators at once, as a transpose: sums[a] is
// Reduce1(v[a]) bit for bit (fp32 addition is commutative).
inline void Reduce16(const __m512* v, float* sums) {
  __m512 s1[8], s2[4], s3[2];
  for (int p = 0; p < 8; ++p) {
    s1[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // s2[q]'s 128-bit lane c holds accumulator 4q + c.
  for (int q = 0; q < 4; ++q) {
    s2[q] = _mm512_add_ps(_mm512_shuffle_f32x4(s1[2 * q], s1[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_f32x4(s1[2 * q], s1[2 * q + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  // s3[h]'s lane c: accumulators 8h + c (elements 0-1), 8h + 4 + c (2-3).
  for (int h = 0; h < 2; ++h) {
    s3[h] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * h], s2[2 * h + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_ps(s2[2 * h], s2[2 * h + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // Lane c, element e: accumulator 4e + c.
  const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(3, 1, 3, 1)));
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  for (int a = 0; a < 16; ++a) sums[a] = lanes[4 * (a % 4) + a / 4];
}

// MT x NT accumulators to out[i * ldo + j].
template <int MT, int NT>
inline void StoreTile(const __m512 (&acc)[MT][NT], float* out, int ldo) {
  constexpr int kCount = MT * NT;
  const __m512* flat = &acc[0][0];
  alignas(64) float sums[kCount];
  int a = 0;
  for (; a + 16 <= kCount; a += 16) Reduce16(flat + a, sums + a);
  for (; a < kCount; ++a) sums[a] = Reduce1(flat[a]);
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) out[i * ldo + j] = sums[i * NT + j];
}

// Sixteen weights from element kk of a row, widened to fp32; the masked
// form loads only the lanes in `mask` and zeroes the rest (the k tail).
template <WeightType T>
inline __m512 LoadWeights(const char* row, int kk) {
  if constexpr (T == WeightType::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + kk);
  } else if constexpr (T == WeightType::kF16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * kk)));
  } else {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * kk)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
}

template <WeightType T>
inline __m512 LoadWeightsMasked(const char* row, int kk, __mmask16 mask) {
  if constexpr (T == WeightType::kF32) {
    return _mm512_maskz_loadu_ps(mask, reinterpret_cast<const float*>(row) + kk);
  } else if constexpr (T == WeightType::kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row + 2 * kk));
  } else {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + 2 * kk));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
}

// kPrefetch: also fetch the next NT weight rows into cache, one line per
// row and step (see RowsAgainstTile).
template <WeightType T, int MT, int NT, bool kPrefetch = false>
inline void FloatTile(const float* x, int ldx, const char* w, size_t ldw, int k, float* out, int ldo) {
  constexpr int kElementBytes = T == WeightType::kF32 ? 4 : 2;
  __m512 acc[MT][NT];
#pragma GCC unroll 8
  for (int i = 0; i < MT; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const int k16 = k & ~15;
  for (int kk = 0; kk < k16; kk += 16) {
    __m512 wv[NT];
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) wv[j] = LoadWeights<T>(w + j * ldw, kk);
    if constexpr (kPrefetch) {
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) _mm_prefetch(w + (NT + j) * ldw + kk * kElementBytes, _MM_HINT_T0);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MT; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + i * ldx + kk);
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (k16 < k) {
    // 0 * 0 added to an accumulator leaves it as it is (up to the sign of a
    // zero), in every tile shape alike.
    const __mmask16 mask = static_cast<__mmask16>((1u << (k - k16)) - 1);
    __m512 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = LoadWeightsMasked<T>(w + j * ldw, k16, mask);
    for (int i = 0; i < MT; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + i * ldx + k16);
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  StoreTile<MT, NT>(acc, out, ldo);
}

// The weights of two Q8_0 blocks (b, b + 1; b + 1 absent when `pair` is
// false: zero quants and scale) as VNNI reads them.
struct Q8Pair {
  __m512i q_offset;  // 64 quants + 128, as u8
  __m512 d;          // lanes 0-7 block b's scale, 8-15 block b + 1's
};

inline Q8Pair LoadQ8Pair(const char* block, bool pair) {
  const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
  Q8Pair p;
  if (pair) {
    const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kQ8_0BlockBytes + 2));
    p.q_offset = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
    // Both fp16 scales (16-bit words 0 and 17 of the pair) spread to eight
    // words each by one permute.
    const __m512i words = _mm512_permutexvar_epi16(
        _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0,
                         0, 0, 0, 0),
        _mm512_loadu_si512(block));
    p.d = _mm512_cvtph_ps(_mm512_castsi512_si256(words));
  } else {
    uint16_t d0;
    std::memcpy(&d0, block, 2);
    p.q_offset = _mm512_zextsi256_si512(q0);
    p.d = _mm512_cvtph_ps(_mm256_zextsi128_si256(_mm_set1_epi16(static_cast<short>(d0))));
  }
  // An absent block's zero quants become 128s, against zero activations.
  p.q_offset = _mm512_xor_si512(p.q_offset, _mm512_set1_epi8(-128));
  return p;
}

// What a Q8 tile needs of one activation row for one pair of blocks, made
// once per GEMM call instead of once per tile of weight rows: the int32
// start of the dot product, -128 * sum(x quants), and the row's two block
// scales, each spread to eight lanes (block b in lanes 0-7, b + 1 in 8-15;
// zero for an absent b + 1). Three vector operations per row and pair,
// which every tile of weight rows used to repeat.
struct Q8RowPair {
  __m512i neg_sum;
  __m512 xd16;
};

// The activation quants of blocks b and b + 1 (zeros for an absent b + 1).
inline __m512i LoadQ8Activations(const int8_t* xq, bool pair) {
  return pair ? _mm512_loadu_si512(xq)
              : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
}

inline Q8RowPair SpreadQ8RowPair(const int8_t* xq, const float* xs, bool pair) {
  const __m512i offset = _mm512_set1_epi8(-128);
  const __m512i spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i xv = LoadQ8Activations(xq, pair);
  // Both scales in one unaligned 8-byte load (a double load of a float
  // pointer would be undefined at 4-byte alignment).
  const __m128 xd =
      pair ? _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i_u*>(xs))) : _mm_load_ss(xs);
  // (w + 128) * x summed from -128 * x: exactly w * x, in int32.
  return {_mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, xv)),
          _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(xd))};
}

// spreads: [x.rows][pairs], pairs = ceil(blocks / 2). The NT weight rows
// come from w (decoded here) or, with kDecoded, already decoded from
// decoded[j * pairs + pair] (DecodeQ8Rows).
template <int MT, int NT, bool kPrefetch = false, bool kDecoded = false>
inline void Q8Tile(const Activations& x, const Q8RowPair* spreads, int row0, const char* w, size_t ldw,
                   const Q8Pair* decoded, float* out, int ldo) {
  const int blocks = x.cols / kQ8_0BlockSize;
  const int pairs = (blocks + 1) / 2;
  __m512 acc[MT][NT];
#pragma GCC unroll 8
  for (int i = 0; i < MT; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int b = 0; b < blocks; b += 2) {
    const bool pair = b + 1 < blocks;
    Q8Pair wp[NT];
    if constexpr (kDecoded) {
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) wp[j] = decoded[j * pairs + b / 2];
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) wp[j] = LoadQ8Pair(w + j * ldw + static_cast<size_t>(b) * kQ8_0BlockBytes, pair);
    }
    if constexpr (kPrefetch) {
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        const char* next = w + (NT + j) * ldw + static_cast<size_t>(b) * kQ8_0BlockBytes;
        _mm_prefetch(next, _MM_HINT_T0);
        _mm_prefetch(next + 2 * kQ8_0BlockBytes - 1, _MM_HINT_T0);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MT; ++i) {
      const size_t r = static_cast<size_t>(row0 + i);
      const int8_t* xq = x.q8 + r * x.cols + static_cast<size_t>(b) * kQ8_0BlockSize;
      const __m512i xv = LoadQ8Activations(xq, pair);
      const Q8RowPair& sp = spreads[r * pairs + b / 2];
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        const __m512i isum = _mm512_dpbusd_epi32(sp.neg_sum, wp[j].q_offset, xv);
        acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(wp[j].d, sp.xd16), _mm512_cvtepi32_ps(isum), acc[i][j]);
      }
    }
  }
  StoreTile<MT, NT>(acc, out, ldo);
}

// Tile shapes: rows in tiles of kRowTile, weight rows kWeightTile at a time;
// 1-row and 1-weight-row tiles take the remainders. Measured with
// cpu_matmul_benchmark (2048x768, 32 and 512 rows, one thread, AVX-512
// Xeon): float 4x4 = 6x4 = 4x6, while 8x3 and 4x3 run 1.7x slower; Q8_0
// 4x4 = 8x2, 4x3 10% slower, 3x4 and 2x4 15-35% slower.
#ifndef INFERD_AVX512_TILES  // -D to try other shapes in the benchmark
#define INFERD_AVX512_TILES 4, 4, 4, 4
#endif
constexpr int kTiles[] = {INFERD_AVX512_TILES};
constexpr int kRowTile = kTiles[0];
constexpr int kWeightTile = kTiles[1];
constexpr int kQ8RowTile = kTiles[2];
constexpr int kQ8WeightTile = kTiles[3];

// The NT weight rows' block pairs as Q8Tile reads them, into out[j * pairs +
// pair]; prefetches the next NT rows meanwhile (see RowsAgainstTile).
template <int NT>
inline void DecodeQ8Rows(const char* w, size_t ldw, int blocks, Q8Pair* out) {
  const int pairs = (blocks + 1) / 2;
  for (int b = 0; b < blocks; b += 2) {
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const char* block = w + j * ldw + static_cast<size_t>(b) * kQ8_0BlockBytes;
      out[j * pairs + b / 2] = LoadQ8Pair(block, b + 1 < blocks);
      const char* next = block + NT * ldw;
      _mm_prefetch(next, _MM_HINT_T0);
      _mm_prefetch(next + 2 * kQ8_0BlockBytes - 1, _MM_HINT_T0);
    }
  }
}

// NT rows of 16-bit weights as floats, into out[j * k + i]; prefetches the
// next NT rows meanwhile.
template <WeightType T, int NT>
inline void WidenRows(const char* w, size_t ldw, int k, float* out) {
  const int k16 = k & ~15;
  for (int kk = 0; kk < k16; kk += 16) {
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      _mm512_storeu_ps(out + static_cast<size_t>(j) * k + kk, LoadWeights<T>(w + j * ldw, kk));
      _mm_prefetch(w + (NT + j) * ldw + kk * 2, _MM_HINT_T0);
    }
  }
  if (k16 < k) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (k - k16)) - 1);
    for (int j = 0; j < NT; ++j) {
      _mm512_mask_storeu_ps(out + static_cast<size_t>(j) * k + k16, mask, LoadWeightsMasked<T>(w + j * ldw, k16, mask));
    }
  }
}

template <WeightType T, int MT, int NT, bool kPrefetch>
inline void Tile(const Activations& x, const Q8RowPair* spreads, int m, const char* w, size_t ldw, float* out,
                 int ldo) {
  if constexpr (T == WeightType::kQ8_0) {
    Q8Tile<MT, NT, kPrefetch>(x, spreads, m, w, ldw, nullptr, out + m * ldo, ldo);
  } else {
    const int k = x.cols;
    FloatTile<T, MT, NT, kPrefetch>(x.f32 + static_cast<size_t>(m) * k, k, w, ldw, k, out + m * ldo, ldo);
  }
}

// All rows against NT weight rows. Only the first row tile reads those
// from memory; the others find them in L1. So that the memory stream does
// not stall meanwhile (batched decode: 8 rows ran at half the bandwidth of
// 1), the last row tile prefetches the next NT weight rows.
//
// Q8_0 weights against more than two row tiles are decoded once (scale
// widening, offset, pairing: about a fifth of a tile's vector operations)
// into a buffer of the calling thread, and every row tile reads them from
// there; the decoded values are the same, so are the results. One core,
// cpu_matmul_benchmark: 32 and 512 rows 148-153 -> 166-179 GFLOP/s; at 8
// rows (two tiles) storing and reloading cost more than decoding twice
// (k = 2048: 150 -> 127), so up to two tiles decode in place.
template <WeightType T, int NT>
inline void RowsAgainstTile(const Activations& x, const Q8RowPair* spreads, const char* w, size_t ldw, float* out,
                            int ldo) {
  constexpr int kMT = T == WeightType::kQ8_0 ? kQ8RowTile : kRowTile;
  const int full = x.rows - x.rows % kMT;
  if constexpr (T == WeightType::kQ8_0) {
    if (x.rows > 2 * kMT) {
      const int blocks = x.cols / kQ8_0BlockSize;
      thread_local AlignedVector<Q8Pair> decoded;
      const size_t n = static_cast<size_t>(NT) * ((blocks + 1) / 2);
      if (decoded.size() < n) decoded.resize(n);
      DecodeQ8Rows<NT>(w, ldw, blocks, decoded.data());
      for (int m = 0; m < full; m += kMT) {
        Q8Tile<kMT, NT, false, true>(x, spreads, m, w, ldw, decoded.data(), out + m * ldo, ldo);
      }
      for (int m = full; m < x.rows; ++m) {
        Q8Tile<1, NT, false, true>(x, spreads, m, w, ldw, decoded.data(), out + m * ldo, ldo);
      }
      return;
    }
  } else if constexpr (T != WeightType::kF32) {
    // The same for 16-bit weights: widened to floats once, exactly, and the
    // float tiles run on those; but only where the widened rows leave L1
    // room for the activation rows (at 2048 inputs they took 32 KiB, and 32
    // rows ran 5% slower instead of 15% faster).
    if (x.rows > 2 * kMT && NT * x.cols * sizeof(float) <= 16 * 1024) {
      const int k = x.cols;
      thread_local AlignedVector<float> widened;
      const size_t n = static_cast<size_t>(NT) * k;
      if (widened.size() < n) widened.resize(n);
      WidenRows<T, NT>(w, ldw, k, widened.data());
      const char* wf = reinterpret_cast<const char*>(widened.data());
      const size_t ldf = static_cast<size_t>(k) * sizeof(float);
      for (int m = 0; m < full; m += kMT) Tile<WeightType::kF32, kMT, NT, false>(x, spreads, m, wf, ldf, out, ldo);
      for (int m = full; m < x.rows; ++m) Tile<WeightType::kF32, 1, NT, false>(x, spreads, m, wf, ldf, out, ldo);
      return;
    }
  }
  for (int m = 0; m < full; m += kMT) {
    if (m + kMT == x.rows) {
      Tile<T, kMT, NT, true>(x, spreads, m, w, ldw, out, ldo);
    } else {
      Tile<T, kMT, NT, false>(x, spreads, m, w, ldw, out, ldo);
    }
  }
  for (int m = full; m < x.rows; ++m) {
    if (m + 1 == x.rows) {
      Tile<T, 1, NT, true>(x, spreads, m, w, ldw, out, ldo);
    } else {
      Tile<T, 1, NT, false>(x, spreads, m, w, ldw, out, ldo);
    }
  }
}

// The Q8RowPairs of every row of x, in a grow-only buffer of the calling
// thread (a steady workload allocates nothing).
const Q8RowPair* SpreadQ8Rows(const Activations& x) {
  thread_local AlignedVector<Q8RowPair> spreads;
  const int blocks = x.cols / kQ8_0BlockSize;
  const int pairs = (blocks + 1) / 2;
  const size_t n = static_cast<size_t>(x.rows) * pairs;
  if (spreads.size() < n) spreads.resize(n);
  for (int r = 0; r < x.rows; ++r) {
    const int8_t* xq = x.q8 + static_cast<size_t>(r) * x.cols;
    const float* xs = x.q8_scales + static_cast<size_t>(r) * blocks;
    for (int b = 0; b < blocks; b += 2) {
      spreads[static_cast<size_t>(r) * pairs + b / 2] =
          SpreadQ8RowPair(xq + static_cast<size_t>(b) * kQ8_0BlockSize, xs + b, b + 1 < blocks);
    }
  }
  return spreads.data();
}

template <WeightType T>
void Gemm(const Activations& x, const void* w, size_t w_row_bytes, int n_out, float* out, int ldo) {
  constexpr int kNT = T == WeightType::kQ8_0 ? kQ8WeightTile : kWeightTile;
  const Q8RowPair* spreads = T == WeightType::kQ8_0 ? SpreadQ8Rows(x) : nullptr;
  const char* wc = static_cast<const char*>(w);
  int n = 0;
  for (; n + kNT <= n_out; n += kNT) {
    RowsAgainstTile<T, kNT>(x, spreads, wc + n * w_row_bytes, w_row_bytes, out + n, ldo);
  }
  for (; n < n_out; ++n) RowsAgainstTile<T, 1>(x, spreads, wc + n * w_row_bytes, w_row_bytes, out + n, ldo);
}


// Float weights packed in 16-row panels (TensorLayout::kPanels16): an outer
// product. A tile of MT activation rows against NV panels keeps MT x NV
// accumulators of 16 outputs each; every step of k loads 16 weights of one
// input element from each panel and multiplies them by each row's x[k],
// broadcast. Each output element is one fp32 fma chain over k in order,
// whatever the tile: batch-invariant, with no horizontal reductions. A
// weight is loaded once per tile and used MT times from a register, and the
// panels are long sequential streams. Against the 4x4 dot-product tiles on
// row-major weights (2 threads, AVX-512 EPYC, a 110M model's matrices):
// 8 rows 20.5 -> 11.6 ms, 32 rows 52 -> 27 ms, 1 row the same.
template <WeightType T>
inline __m512 LoadPanelStep(const char* p) {
  if constexpr (T == WeightType::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
  } else if constexpr (T == WeightType::kF16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
}

// The hardware prefetchers alone do not keep three panel streams in flight
// (each tile starts its panels cold, and a decode tile does too little work
// per weight to hide the misses): each stream also prefetches 2 KiB ahead,
// in tiles of every height. forward_benchmark batch 1, min of 3-5
// alternating runs: f32 7.9 -> 7.6 ms, f16 6.9 -> 5.7, bf16 5.7 -> 5.2 at
// 1 KiB ahead, one-row tiles only. Then 2 KiB, and in every tile, in one
// process alternating 15-25 times (median ratio of the rounds): f16 batch 1
// 0.90-0.92 (4 KiB: 0.99, 512 B: 1.10), bf16 batch 1 0.94, q8_0 batch 1
// 0.97, f32 batch 1 0.99; batch 8 f16 0.87, bf16 0.87, f32 0.90, q8_0 0.91;
// f16 batch 32 0.95, a 128-token prefill 0.97, a 512-token one 1.00.
constexpr size_t kPanelPrefetchBytes = 2048;

// Prefetches kPanelPrefetchBytes past `at` in each of a group's NV panels
// (panel j's step at at + j * panel_bytes). Near a panel's end the lines
// ahead are the next group's: the next block of weight rows, which the same
// thread takes next within its chunk (ThreadPool::ParallelFor), so its
// panels do not start cold either. Against running on into the group's
// own next panel (one process, 15-25 alternations, median ratio): f16
// batch 1 0.95-0.96, bf16 0.99, f32 1.00, q8_0 batch 1 0.95, batch 8 0.97.
template <int NV>
inline void PrefetchPanelsAhead(const char* at, size_t panel_bytes, const char* first_panel_end) {
  const char* ahead = at + kPanelPrefetchBytes;
  if (ahead >= first_panel_end) ahead += (NV - 1) * panel_bytes;
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) _mm_prefetch(ahead + j * panel_bytes, _MM_HINT_T0);
}

// A panel tile's MT x NV accumulators from out (rows ldo apart, lanes past
// last_mask in the last panel zero) when `accumulate`, else zero; and back.
template <int MT, int NV>
inline void StartPanelSums(__m512 (&acc)[MT][NV], const float* out, int ldo, __mmask16 last_mask, bool accumulate) {
#pragma GCC unroll 8
  for (int i = 0; i < MT; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const __mmask16 mask = j + 1 == NV ? last_mask : static_cast<__mmask16>(0xFFFF);
      acc[i][j] = accumulate ? _mm512_maskz_loadu_ps(mask, out + static_cast<size_t>(i) * ldo + 16 * j)
                             : _mm512_setzero_ps();
    }
  }
}

template <int MT, int NV>
inline void StorePanelSums(const __m512 (&acc)[MT][NV], float* out, int ldo, __mmask16 last_mask) {
#pragma GCC unroll 8
  for (int i = 0; i < MT; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j + 1 < NV; ++j) _mm512_storeu_ps(out + static_cast<size_t>(i) * ldo + 16 * j, acc[i][j]);
    _mm512_mask_storeu_ps(out + static_cast<size_t>(i) * ldo + 16 * (NV - 1), last_mask, acc[i][NV - 1]);
  }
}

// Calls tile.template operator()<MT>() for MT = rows, 1 <= rows <= kMax (the
// row remainder after the full tiles, as a compile-time tile height).
template <int kMax, typename Tile>
inline void WithRowCount(int rows, const Tile& tile) {
  if constexpr (kMax > 0) {
    if (rows == kMax) {
      tile.template operator()<kMax>();
    } else {
      WithRowCount<kMax - 1>(rows, tile);
    }
  }
}

// The n_out outputs' panels three at a time, then the last one or two:
// group(w, out, mask) with NV = the group's panel count as a template
// argument, w its first panel, out its first output column and mask the
// lanes of its last panel that are real outputs.
template <typename Group>
inline void ForEachPanelGroup(const void* panels, size_t panel_bytes, int n_out, float* out, const Group& group) {
  constexpr int kPerGroup = 3;
  const int count = (n_out + kPanelRows - 1) / kPanelRows;
  const __mmask16 tail_mask =
      n_out % kPanelRows == 0 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n_out % kPanelRows)) - 1);
  const char* base = static_cast<const char*>(panels);
  for (int p = 0; p < count; p += kPerGroup) {
    const int nv = std::min(kPerGroup, count - p);
    const __mmask16 mask = p + nv == count ? tail_mask : static_cast<__mmask16>(0xFFFF);
    const char* w = base + static_cast<size_t>(p) * panel_bytes;
    float* o = out + p * kPanelRows;
    if (nv == 3) {
      group.template operator()<3>(w, o, mask);
    } else if (nv == 2) {
      group.template operator()<2>(w, o, mask);
    } else {
      group.template operator()<1>(w, o, mask);
    }
  }
}

// out[i * ldo + 16 * j + l] for i < MT, j < NV, l < 16 (lanes outside
// last_mask in the last panel are not written), over k input elements of
// rows ldx apart; with `accumulate`, continuing the sums already in out
// (a stored fp32 sum reloads exactly, so the chain is unchanged).
template <WeightType T, int MT, int NV>
inline void PanelTile(const float* x, int ldx, int k, const char* panels, size_t panel_bytes, const char* first_panel_end,
                      float* out, int ldo, __mmask16 last_mask, bool accumulate) {
  constexpr size_t kStepBytes = T == WeightType::kF32 ? 64 : 32;
  __m512 acc[MT][NV];
  StartPanelSums<MT, NV>(acc, out, ldo, last_mask, accumulate);
  const char* p = panels;
  for (int kk = 0; kk < k; ++kk, p += kStepBytes) {
    __m512 wv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) wv[j] = LoadPanelStep<T>(p + j * panel_bytes);
    PrefetchPanelsAhead<NV>(p, panel_bytes, first_panel_end);
#pragma GCC unroll 8
    for (int i = 0; i < MT; ++i) {
      const __m512 xv = _mm512_set1_ps(x[static_cast<size_t>(i) * ldx + kk]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  StorePanelSums<MT, NV>(acc, out, ldo, last_mask);
}

// All of x's rows against NV panels: tiles of 8 rows, then one tile of the
// remaining 1-7.
constexpr int kPanelRowTile = 8;

// Against more than one row tile, k goes in spans whose slice of the NV
// panels (about 24 KiB) stays in L1 while every row tile passes over it;
// the whole of k at once left each tile re-reading the panels from L2
// (f32 prefill 8% slower than the row-major tiles before it).
template <WeightType T, int NV>
inline void RowsAgainstPanels(const Activations& x, const char* w, size_t panel_bytes, float* out, int ldo,
                              __mmask16 last_mask) {
  constexpr size_t kStepBytes = T == WeightType::kF32 ? 64 : 32;
  constexpr int kSpan = 24 * 1024 / (3 * kStepBytes);
  const int k = x.cols;
  const int span = x.rows > kPanelRowTile ? kSpan : k;
  for (int k0 = 0; k0 < k; k0 += span) {
    const int kc = std::min(span, k - k0);
    const float* xk = x.f32 + k0;
    const char* wk = w + static_cast<size_t>(k0) * kStepBytes;
    const bool accumulate = k0 > 0;
    int m = 0;
    for (; m + kPanelRowTile <= x.rows; m += kPanelRowTile) {
      PanelTile<T, kPanelRowTile, NV>(xk + static_cast<size_t>(m) * k, k, kc, wk, panel_bytes, w + panel_bytes,
                                      out + static_cast<size_t>(m) * ldo, ldo, last_mask, accumulate);
    }
    WithRowCount<kPanelRowTile - 1>(x.rows - m, [&]<int MT>() {
      PanelTile<T, MT, NV>(xk + static_cast<size_t>(m) * k, k, kc, wk, panel_bytes, w + panel_bytes,
                           out + static_cast<size_t>(m) * ldo, ldo, last_mask, accumulate);
    });
  }
}

// Panels three at a time (8 x 3 = 24 accumulators, 3 weight vectors and a
// broadcast: 28 of the 32 registers), then the last one or two.
template <WeightType T>
void PanelGemm(const Activations& x, const void* panels, int n_out, float* out, int ldo) {
  const size_t panel_bytes = static_cast<size_t>(x.cols) * kPanelRows * (T == WeightType::kF32 ? 4 : 2);
  ForEachPanelGroup(panels, panel_bytes, n_out, out, [&]<int NV>(const char* w, float* o, __mmask16 mask) {
    RowsAgainstPanels<T, NV>(x, w, panel_bytes, o, ldo, mask);
  });
}

// Q8_0 weights in panels (model_weights.h): per block of 32 inputs, each of
// the 16 rows' int32 dot products is built in its own lane by eight
// vpdpbusd, each multiplying 4 quants of 16 rows (64 bytes, stored + 128 as
// u8) by the same 4 activation quants broadcast (s8); the stored offset's
// share, 128 * sum(x quants), is the starting value. Then one fp32
// multiply-add per output and block: acc += float(dot) * (w_scale *
// x_scale). Each output element is one such chain over the blocks in
// order, whatever the tile, the span or the split: batch-invariant. Against
// the row-major tiles, a weight byte takes 1/8 of a vpdpbusd, a load and
// no decoding (the row-major tiles widen scales and offset quants per tile).
template <int MT, int NV>
inline void Q8PanelTile(const Activations& x, int row0, int block0, int nblocks, const char* panels,
                        size_t panel_bytes, float* out, int ldo, __mmask16 last_mask, bool accumulate) {
  const char* first_panel_end = panels + panel_bytes;
  const int blocks = x.cols / kQ8_0BlockSize;
  __m512 acc[MT][NV];
  StartPanelSums<MT, NV>(acc, out, ldo, last_mask, accumulate);
  for (int b = block0; b < block0 + nblocks; ++b) {
    const char* block = panels + static_cast<size_t>(b) * kQ8PanelBlockBytes;
    __m512i dot[MT][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MT; ++i) {
      const __m512i start = _mm512_set1_epi32(-128 * x.q8_sums[static_cast<size_t>(row0 + i) * blocks + b]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) dot[i][j] = start;
    }
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      __m512i wv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        wv[j] = _mm512_loadu_si512(block + j * panel_bytes + 2 * kPanelRows + 64 * g);
      }
      // Each panel stream prefetched ahead, nine lines a block.
      PrefetchPanelsAhead<NV>(block + 64 * g, panel_bytes, first_panel_end);
      if (g == 7) PrefetchPanelsAhead<NV>(block + 512, panel_bytes, first_panel_end);
#pragma GCC unroll 8
      for (int i = 0; i < MT; ++i) {
        int32_t four;
        std::memcpy(&four, x.q8 + static_cast<size_t>(row0 + i) * x.cols + b * kQ8_0BlockSize + 4 * g, 4);
        const __m512i xv = _mm512_set1_epi32(four);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) dot[i][j] = _mm512_dpbusd_epi32(dot[i][j], wv[j], xv);
      }
    }
    __m512 wd[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      wd[j] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + j * panel_bytes)));
    }
#pragma GCC unroll 8
    for (int i = 0; i < MT; ++i) {
      const __m512 xd = _mm512_set1_ps(x.q8_scales[static_cast<size_t>(row0 + i) * blocks + b]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i][j]), _mm512_mul_ps(wd[j], xd), acc[i][j]);
      }
    }
  }
  StorePanelSums<MT, NV>(acc, out, ldo, last_mask);
}

// Tiles of 4 rows against 3 panels: 12 int32 dot products, 12 fp32
// accumulators, 3 weight vectors and a broadcast, 28 of the 32 registers.
constexpr int kQ8PanelRowTile = 4;

// As RowsAgainstPanels: past one row tile, the blocks go in spans whose
// slice of the NV panels (about 24 KiB) stays in L1 for every row tile.
template <int NV>
inline void RowsAgainstQ8Panels(const Activations& x, const char* w, size_t panel_bytes, float* out, int ldo,
                                __mmask16 last_mask) {
  constexpr int kSpan = 24 * 1024 / (3 * kQ8PanelBlockBytes);
  const int blocks = x.cols / kQ8_0BlockSize;
  const int span = x.rows > kQ8PanelRowTile ? kSpan : blocks;
  for (int b0 = 0; b0 < blocks; b0 += span) {
    const int nb = std::min(span, blocks - b0);
    const bool accumulate = b0 > 0;
    int m = 0;
    for (; m + kQ8PanelRowTile <= x.rows; m += kQ8PanelRowTile) {
      Q8PanelTile<kQ8PanelRowTile, NV>(x, m, b0, nb, w, panel_bytes, out + static_cast<size_t>(m) * ldo, ldo,
                                       last_mask, accumulate);
    }
    WithRowCount<kQ8PanelRowTile - 1>(x.rows - m, [&]<int MT>() {
      Q8PanelTile<MT, NV>(x, m, b0, nb, w, panel_bytes, out + static_cast<size_t>(m) * ldo, ldo, last_mask,
                          accumulate);
    });
  }
}

void Q8PanelGemm(const Activations& x, const void* panels, int n_out, float* out, int ldo) {
  const size_t panel_bytes = static_cast<size_t>(x.cols / kQ8_0BlockSize) * kQ8PanelBlockBytes;
  ForEachPanelGroup(panels, panel_bytes, n_out, out, [&]<int NV>(const char* w, float* o, __mmask16 mask) {
    RowsAgainstQ8Panels<NV>(x, w, panel_bytes, o, ldo, mask);
  });
}

}  // namespace
}  // namespace inferd::cpu::parts

#pragma GCC pop_options

namespace inferd::cpu::parts {

// Outside the target region: runs on any CPU.
bool Avx512IsaKernels(IsaKernels* out) {
  *out = {{Gemm<WeightType::kF32>, Gemm<WeightType::kF16>, Gemm<WeightType::kBF16>, Gemm<WeightType::kQ8_0>},
          {PanelGemm<WeightType::kF32>, PanelGemm<WeightType::kF16>, PanelGemm<WeightType::kBF16>, Q8PanelGemm}};
  return true;
}

}  // namespace inferd::cpu::parts

#else

namespace inferd::cpu::parts {
bool Avx512IsaKernels(IsaKernels*) { return false; }
}  // namespace inferd::cpu::parts

#endif

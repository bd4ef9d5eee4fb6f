#include "engine/cpu/attention.h"

// First, before a header includes it unguarded: GCC 12 flags the
// self-initialized _mm512_undefined_* values inside the intrinsics when
// they are inlined into the AVX-512 tiles (GCC bug 105593).
#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cmath>
#include <string_view>

#include "engine/cpu/kernels.h"
#include "engine/expf_x8.h"
#include "engine/model/float16.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && INFERD_EXPF_X8
#define INFERD_ATTENTION_AVX2 1
#endif

namespace inferd::cpu {
namespace {

constexpr int kTile = 32;

inline float ToFloat(float x) { return x; }
inline float ToFloat(uint16_t h) { return HalfToFloat(h); }

// The K and V rows of one tile of keys.
template <typename T>
struct TileRows {
  const T* k[kTile];
  const T* v[kTile];
};

// Walks the rows of a K and a V PagedRows tile by tile, without a division
// per row. It prefetches the row 16 ahead of each one it hands out: a
// sequence's blocks are scattered over the pool, so the hardware
// prefetcher, which follows a stream within a page, would start each block
// cold. Prefetching the whole next block on entering a block,
// as before, left it latency-bound: a batch-8 f16 decode step at context
// 192 spent 2.9-3.5 ms in attention (56 MB of K/V, 17 GB/s); a row at a
// time, 16 ahead, 1.9-2.5 ms (8, 24 and 32 ahead were the same within the
// noise, 64 slower), f32 4.5-5.0 -> 3.4-3.6 ms, batch 32 f16 step
// 39.0-39.8 -> 33.6-35.8 ms.
template <typename T>
class TileWalker {
 public:
  TileWalker(const PagedRows<T>& keys, const PagedRows<T>& values, int context)
      : keys_(keys), values_(values), context_(context) {
    for (int p = 0; p < kAheadRows; ++p) PrefetchAhead();
  }

  // The next `count` rows.
  void Next(int count, TileRows<T>* rows) {
    for (int i = 0; i < count; ++i) {
      PrefetchAhead();
      const size_t at = static_cast<size_t>(keys_.block_table[block_]) * keys_.block_stride +
                        static_cast<size_t>(slot_) * keys_.row_stride;
      rows->k[i] = keys_.data + at;
      rows->v[i] = values_.data + at;
      if (++slot_ == keys_.block_size) {
        slot_ = 0;
        ++block_;
      }
    }
  }

 private:
  static constexpr int kAheadRows = 16;

  void PrefetchAhead() {
    if (ahead_ >= context_) return;
    const size_t at = static_cast<size_t>(keys_.block_table[ahead_block_]) * keys_.block_stride +
                      static_cast<size_t>(ahead_slot_) * keys_.row_stride;
    const char* k = reinterpret_cast<const char*>(keys_.data + at);
    const char* v = reinterpret_cast<const char*>(values_.data + at);
    for (size_t b = 0; b < keys_.row_stride * sizeof(T); b += 64) {
      __builtin_prefetch(k + b);
      __builtin_prefetch(v + b);
    }
    ++ahead_;
    if (++ahead_slot_ == keys_.block_size) {
      ahead_slot_ = 0;
      ++ahead_block_;
    }
  }

  const PagedRows<T>& keys_;
  const PagedRows<T>& values_;
  const int context_;
  int block_ = 0;
  int slot_ = 0;
  // The next row to prefetch, as a row and as a block and slot.
  int ahead_ = 0;
  int ahead_block_ = 0;
  int ahead_slot_ = 0;
};

// One query's running state between tiles: the maximum score so far and
// the sum of exp(score - maximum); the weighted V sum lives in its out row.
struct SoftmaxState {
  float max_score = -INFINITY;
  float sum = 0.0f;
};

// One query over the first `count` rows of a tile.
template <typename T>
void TilePortable(const float* q, const TileRows<T>& rows, int count, int head_dim, float sqrt_head_dim, float* acc,
                  SoftmaxState* state) {
  float scores[kTile];
  float tile_max = state->max_score;
  for (int i = 0; i < count; ++i) {
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d) dot += q[d] * ToFloat(rows.k[i][d]);
    scores[i] = dot / sqrt_head_dim;
    tile_max = std::max(tile_max, scores[i]);
  }
  if (tile_max > state->max_score) {
    const float rescale = expf(state->max_score - tile_max);  // 0 on the first tile
    state->sum *= rescale;
    for (int d = 0; d < head_dim; ++d) acc[d] *= rescale;
    state->max_score = tile_max;
  }
  for (int i = 0; i < count; ++i) {
    const float a = expf(scores[i] - state->max_score);
    state->sum += a;
    for (int d = 0; d < head_dim; ++d) acc[d] += a * ToFloat(rows.v[i][d]);
  }
}

#ifdef INFERD_ATTENTION_AVX2

inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float Reduce(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// The softmax part of a tile, the same for TileAvx2 and TileAvx512: raises
// the running maximum to the tile's, writes weights[n] = exp(scores[n] -
// maximum) (each exactly expf's, eight at a time) and adds them to the
// running sum, in order. Returns the factor that rescales the V sum so far
// (0 on the first tile), or 1 where the maximum did not move.
inline float SoftmaxWeights(float* scores, int count, SoftmaxState* state, float* weights) {
  float rescale = 1.0f;
  float tile_max = state->max_score;
  for (int n = 0; n < count; ++n) tile_max = std::max(tile_max, scores[n]);
  if (tile_max > state->max_score) {
    rescale = expf(state->max_score - tile_max);
    state->sum *= rescale;
    state->max_score = tile_max;
  }
  for (int n = count; n < kTile && n % 8 != 0; ++n) scores[n] = 0.0f;  // lanes past the tile, unused
  const __m256 max_score = _mm256_set1_ps(state->max_score);
  for (int n = 0; n < count; n += 8) {
    _mm256_store_ps(weights + n, ExpfX8(_mm256_sub_ps(_mm256_load_ps(scores + n), max_score)));
  }
  for (int n = 0; n < count; ++n) state->sum += weights[n];
  return rescale;
}

// TilePortable for head_dim = 8 * V, q and the V sum in registers.
template <int V, typename T>
void TileAvx2(const float* q, const TileRows<T>& rows, int count, float sqrt_head_dim, float* acc_row,
              SoftmaxState* state) {
  __m256 qv[V], acc[V];
  for (int j = 0; j < V; ++j) {
    qv[j] = _mm256_loadu_ps(q + 8 * j);
    acc[j] = _mm256_loadu_ps(acc_row + 8 * j);
  }
  alignas(32) float scores[kTile];
  int i = 0;
  // Four keys at a time: four independent FMA chains.
  for (; i + 4 <= count; i += 4) {
    const T* k0 = rows.k[i];
    const T* k1 = rows.k[i + 1];
    const T* k2 = rows.k[i + 2];
    const T* k3 = rows.k[i + 3];
    __m256 d0 = _mm256_mul_ps(qv[0], Load8(k0)), d1 = _mm256_mul_ps(qv[0], Load8(k1));
    __m256 d2 = _mm256_mul_ps(qv[0], Load8(k2)), d3 = _mm256_mul_ps(qv[0], Load8(k3));
    for (int j = 1; j < V; ++j) {
      d0 = _mm256_fmadd_ps(qv[j], Load8(k0 + 8 * j), d0);
      d1 = _mm256_fmadd_ps(qv[j], Load8(k1 + 8 * j), d1);
      d2 = _mm256_fmadd_ps(qv[j], Load8(k2 + 8 * j), d2);
      d3 = _mm256_fmadd_ps(qv[j], Load8(k3 + 8 * j), d3);
    }
    scores[i] = Reduce(d0) / sqrt_head_dim;
    scores[i + 1] = Reduce(d1) / sqrt_head_dim;
    scores[i + 2] = Reduce(d2) / sqrt_head_dim;
    scores[i + 3] = Reduce(d3) / sqrt_head_dim;
  }
  for (; i < count; ++i) {
    const T* k = rows.k[i];
    __m256 d = _mm256_mul_ps(qv[0], Load8(k));
    for (int j = 1; j < V; ++j) d = _mm256_fmadd_ps(qv[j], Load8(k + 8 * j), d);
    scores[i] = Reduce(d) / sqrt_head_dim;
  }
  alignas(32) float weights[kTile];
  const float rescale = SoftmaxWeights(scores, count, state, weights);
  if (rescale != 1.0f) {
    const __m256 r = _mm256_set1_ps(rescale);
    for (int j = 0; j < V; ++j) acc[j] = _mm256_mul_ps(acc[j], r);
  }
  for (int n = 0; n < count; ++n) {
    const T* v = rows.v[n];
    const __m256 av = _mm256_set1_ps(weights[n]);
    for (int j = 0; j < V; ++j) acc[j] = _mm256_fmadd_ps(av, Load8(v + 8 * j), acc[j]);
  }
  for (int j = 0; j < V; ++j) _mm256_storeu_ps(acc_row + 8 * j, acc[j]);
}

// TileAvx2 in 512-bit registers, for head_dim = 16 * V16, with the same
// bits: each score is two keys to a register (lanes 0-7 and 8-15), every
// lane the same fma chain over head_dim / 8 steps as TileAvx2's, reduced by
// the same tree four keys at a time; the V sum lane for lane the same
// chain. Half the vector instructions of TileAvx2. One thread, decode
// attention alone (attention_benchmark): f16 5.60 -> 3.69 ms, f32 9.54 ->
// 7.16. In the forward pass, where attention also waits on memory (one
// process, 6-20 alternations, median ratio): a 512-token prefill f16 0.964,
// f32 0.977; f32 batch 8 0.967; f16 batch 1, 8 and 32 1.00. Its functions
// carry the target attribute and are not inlined into the generic code
// around them; the CPU backend's kernel set decides whether they run.
#define INFERD_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

INFERD_AVX512_TARGET inline __m512 LoadPair8(const float* a, const float* b) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a)), _mm256_loadu_ps(b), 1);
}
INFERD_AVX512_TARGET inline __m512 LoadPair8(const uint16_t* a, const uint16_t* b) {
  const __m256i halves = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1);
  return _mm512_cvtph_ps(halves);
}
INFERD_AVX512_TARGET inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
INFERD_AVX512_TARGET inline __m512 Load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Reduce's tree for the four keys of two pair registers: scores[0..3] =
// Reduce(key) for keys (a.lo, a.hi, b.lo, b.hi).
INFERD_AVX512_TARGET inline void Reduce4(__m512 a, __m512 b, float* scores) {
  // s's 128-bit lane c: key c's lanes 0-3 plus its lanes 4-7.
  const __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 t = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 u = _mm512_add_ps(t, _mm512_movehdup_ps(t));
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, u);
  for (int c = 0; c < 4; ++c) scores[c] = lanes[4 * c];
}

template <int V16, typename T>
INFERD_AVX512_TARGET void TileAvx512(const float* q, const TileRows<T>& rows, int count, float sqrt_head_dim,
                                     float* acc_row, SoftmaxState* state) {
  constexpr int V8 = 2 * V16;
  __m512 qv[V8];  // q's 8-float step j in both halves
  for (int j = 0; j < V8; ++j) {
    const __m256 h = _mm256_loadu_ps(q + 8 * j);
    qv[j] = _mm512_insertf32x8(_mm512_castps256_ps512(h), h, 1);
  }
  __m512 acc[V16];
  for (int j = 0; j < V16; ++j) acc[j] = _mm512_loadu_ps(acc_row + 16 * j);
  alignas(64) float scores[kTile];
  int i = 0;
  // Eight keys at a time: four independent fma chains of two keys each.
  for (; i + 8 <= count; i += 8) {
    __m512 d[4];
    for (int p = 0; p < 4; ++p) d[p] = _mm512_mul_ps(qv[0], LoadPair8(rows.k[i + 2 * p], rows.k[i + 2 * p + 1]));
    for (int j = 1; j < V8; ++j) {
      for (int p = 0; p < 4; ++p) {
        d[p] = _mm512_fmadd_ps(qv[j], LoadPair8(rows.k[i + 2 * p] + 8 * j, rows.k[i + 2 * p + 1] + 8 * j), d[p]);
      }
    }
    Reduce4(d[0], d[1], scores + i);
    Reduce4(d[2], d[3], scores + i + 4);
    for (int n = i; n < i + 8; ++n) scores[n] /= sqrt_head_dim;
  }
  for (; i < count; ++i) {
    const T* k = rows.k[i];
    __m256 d = _mm256_mul_ps(_mm512_castps512_ps256(qv[0]), Load8(k));
    for (int j = 1; j < V8; ++j) d = _mm256_fmadd_ps(_mm512_castps512_ps256(qv[j]), Load8(k + 8 * j), d);
    scores[i] = Reduce(d) / sqrt_head_dim;
  }
  alignas(32) float weights[kTile];
  const float rescale = SoftmaxWeights(scores, count, state, weights);
  if (rescale != 1.0f) {
    const __m512 r = _mm512_set1_ps(rescale);
    for (int j = 0; j < V16; ++j) acc[j] = _mm512_mul_ps(acc[j], r);
  }
  for (int n = 0; n < count; ++n) {
    const T* v = rows.v[n];
    const __m512 av = _mm512_set1_ps(weights[n]);
    for (int j = 0; j < V16; ++j) acc[j] = _mm512_fmadd_ps(av, Load16(v + 16 * j), acc[j]);
  }
  for (int j = 0; j < V16; ++j) _mm512_storeu_ps(acc_row + 16 * j, acc[j]);
}

// Whether the AVX-512 tiles run: where the CPU backend's kernels are the
// AVX-512 set (the CPU has it, and INFERD_CPU_KERNELS does not name
// another set, so comparing sets compares attention too).
bool UseAvx512Tiles() {
  static const bool use = std::string_view(ActiveKernels().isa) == "avx512";
  return use;
}

#endif

// Every query of the run, tile by tile: query i takes the tiles below its
// own context, with the same operations in the same order as alone.
template <typename T, typename TileFn>
void AttendRun(const QueryRun& run, const PagedRows<T>& keys, const PagedRows<T>& values, int head_dim,
               TileFn tile) {
  SoftmaxState states[kMaxQueryRun];
  for (int i = 0; i < run.count; ++i) std::fill_n(run.out + i * run.out_stride, head_dim, 0.0f);
  const int last_context = run.first_context + run.count - 1;
  TileWalker<T> walker(keys, values, last_context);
  TileRows<T> rows;
  for (int p0 = 0; p0 < last_context; p0 += kTile) {
    walker.Next(std::min(kTile, last_context - p0), &rows);
    // Query i's context, first_context + i, must exceed p0.
    for (int i = std::max(0, p0 - run.first_context + 1); i < run.count; ++i) {
      const int count = std::min(kTile, run.first_context + i - p0);
      tile(run.q + i * run.q_stride, rows, count, run.out + i * run.out_stride, &states[i]);
    }
  }
  for (int i = 0; i < run.count; ++i) {
    const float inv_sum = 1.0f / states[i].sum;
    float* out = run.out + i * run.out_stride;
    for (int d = 0; d < head_dim; ++d) out[d] *= inv_sum;
  }
}

template <typename T>
void Attend(const QueryRun& run, const PagedRows<T>& keys, const PagedRows<T>& values, int head_dim,
            AttentionTiles tiles) {
  const float sqrt_head_dim = sqrtf(static_cast<float>(head_dim));
#ifdef INFERD_ATTENTION_AVX2
  auto avx2 = [&]<int V>() {
    AttendRun(run, keys, values, head_dim,
              [&](const float* q, const TileRows<T>& rows, int count, float* acc, SoftmaxState* state) {
                TileAvx2<V>(q, rows, count, sqrt_head_dim, acc, state);
              });
  };
  auto avx512 = [&]<int V16>() {
    AttendRun(run, keys, values, head_dim,
              [&](const float* q, const TileRows<T>& rows, int count, float* acc, SoftmaxState* state) {
                TileAvx512<V16>(q, rows, count, sqrt_head_dim, acc, state);
              });
  };
  if (tiles == AttentionTiles::kBest && UseAvx512Tiles()) {
    switch (head_dim) {
      case 16: return avx512.template operator()<1>();
      case 32: return avx512.template operator()<2>();
      case 64: return avx512.template operator()<4>();
      case 128: return avx512.template operator()<8>();
      case 256: return avx512.template operator()<16>();
      default: break;
    }
  }
  switch (head_dim) {
    case 8: return avx2.template operator()<1>();
    case 16: return avx2.template operator()<2>();
    case 32: return avx2.template operator()<4>();
    case 64: return avx2.template operator()<8>();
    case 128: return avx2.template operator()<16>();
    case 256: return avx2.template operator()<32>();
    default: break;
  }
#endif
  AttendRun(run, keys, values, head_dim,
            [&](const float* q, const TileRows<T>& rows, int count, float* acc, SoftmaxState* state) {
              TilePortable(q, rows, count, head_dim, sqrt_head_dim, acc, state);
            });
}

}  // namespace

void AttendPaged(const QueryRun& run, const PagedRows<float>& keys, const PagedRows<float>& values, int head_dim,
                 AttentionTiles tiles) {
  Attend(run, keys, values, head_dim, tiles);
}

void AttendPaged(const QueryRun& run, const PagedRows<uint16_t>& keys, const PagedRows<uint16_t>& values,
                 int head_dim, AttentionTiles tiles) {
  Attend(run, keys, values, head_dim, tiles);
}

void FloatsToHalves(const float* src, int n, uint16_t* dst) {
  int i = 0;
#ifdef INFERD_ATTENTION_AVX2
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#endif
  for (; i < n; ++i) dst[i] = FloatToHalf(src[i]);
}

}  // namespace inferd::cpu

#include "engine/cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "engine/model/float16.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#endif

namespace inferd::cpu {
namespace {

constexpr int kTile = 32;

inline float ToFloat(float x) { return x; }
inline float ToFloat(uint16_t h) { return HalfToFloat(h); }

// Walks the rows of a PagedRows in order without a division per row. On
// entering a block it prefetches the next one: a sequence's blocks are
// scattered over the pool, so the hardware prefetcher, which follows a
// stream within a page, would start each block cold.
template <typename T>
class RowCursor {
 public:
  RowCursor(const PagedRows<T>& rows, int context) : rows_(rows), num_blocks_((context + rows.block_size - 1) / rows.block_size) {
    Prefetch(0);
  }
  const T* Next() {
    if (slot_ == 0) Prefetch(block_ + 1);
    const T* row = BlockStart(block_) + static_cast<size_t>(slot_) * rows_.row_stride;
    if (++slot_ == rows_.block_size) {
      slot_ = 0;
      ++block_;
    }
    return row;
  }

 private:
  const T* BlockStart(int block) const {
    return rows_.data + static_cast<size_t>(rows_.block_table[block]) * rows_.block_stride;
  }
  void Prefetch(int block) const {
    if (block >= num_blocks_) return;
    const char* start = reinterpret_cast<const char*>(BlockStart(block));
    const size_t bytes = static_cast<size_t>(rows_.block_size) * rows_.row_stride * sizeof(T);
    for (size_t at = 0; at < bytes; at += 64) __builtin_prefetch(start + at);
  }

  const PagedRows<T>& rows_;
  const int num_blocks_;
  int block_ = 0;
  int slot_ = 0;
};

template <typename T>
void AttendPortable(const float* q, const PagedRows<T>& keys, const PagedRows<T>& values, int context, int head_dim,
                    float* out) {
  const float sqrt_head_dim = sqrtf(static_cast<float>(head_dim));
  RowCursor<T> k_rows(keys, context), v_rows(values, context);
  std::fill_n(out, head_dim, 0.0f);
  float max_score = -INFINITY, sum = 0.0f;
  float scores[kTile];
  for (int p0 = 0; p0 < context; p0 += kTile) {
    const int count = std::min(kTile, context - p0);
    float tile_max = max_score;
    for (int i = 0; i < count; ++i) {
      const T* k = k_rows.Next();
      float dot = 0.0f;
      for (int d = 0; d < head_dim; ++d) dot += q[d] * ToFloat(k[d]);
      scores[i] = dot / sqrt_head_dim;
      tile_max = std::max(tile_max, scores[i]);
    }
    if (tile_max > max_score) {
      const float rescale = expf(max_score - tile_max);  // 0 on the first tile
      sum *= rescale;
      for (int d = 0; d < head_dim; ++d) out[d] *= rescale;
      max_score = tile_max;
    }
    for (int i = 0; i < count; ++i) {
      const float a = expf(scores[i] - max_score);
      sum += a;
      const T* v = v_rows.Next();
      for (int d = 0; d < head_dim; ++d) out[d] += a * ToFloat(v[d]);
    }
  }
  const float inv_sum = 1.0f / sum;
  for (int d = 0; d < head_dim; ++d) out[d] *= inv_sum;
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define INFERD_ATTENTION_AVX2 1

inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float Reduce(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// head_dim = 8 * V.
template <int V, typename T>
void AttendAvx2(const float* q, const PagedRows<T>& keys, const PagedRows<T>& values, int context, float* out) {
  const float sqrt_head_dim = sqrtf(static_cast<float>(8 * V));
  RowCursor<T> k_rows(keys, context), v_rows(values, context);
  __m256 qv[V], acc[V];
  for (int j = 0; j < V; ++j) {
    qv[j] = _mm256_loadu_ps(q + 8 * j);
    acc[j] = _mm256_setzero_ps();
  }
  float max_score = -INFINITY, sum = 0.0f;
  alignas(32) float scores[kTile];
  for (int p0 = 0; p0 < context; p0 += kTile) {
    const int count = std::min(kTile, context - p0);
    float tile_max = max_score;
    int i = 0;
    // Four keys at a time: four independent FMA chains.
    for (; i + 4 <= count; i += 4) {
      const T* k0 = k_rows.Next();
      const T* k1 = k_rows.Next();
      const T* k2 = k_rows.Next();
      const T* k3 = k_rows.Next();
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
      const T* k = k_rows.Next();
      __m256 d = _mm256_mul_ps(qv[0], Load8(k));
      for (int j = 1; j < V; ++j) d = _mm256_fmadd_ps(qv[j], Load8(k + 8 * j), d);
      scores[i] = Reduce(d) / sqrt_head_dim;
    }
    for (int n = 0; n < count; ++n) tile_max = std::max(tile_max, scores[n]);
    if (tile_max > max_score) {
      const float rescale = expf(max_score - tile_max);  // 0 on the first tile
      sum *= rescale;
      const __m256 r = _mm256_set1_ps(rescale);
      for (int j = 0; j < V; ++j) acc[j] = _mm256_mul_ps(acc[j], r);
      max_score = tile_max;
    }
    for (int n = 0; n < count; ++n) {
      const float a = expf(scores[n] - max_score);
      sum += a;
      const T* v = v_rows.Next();
      const __m256 av = _mm256_set1_ps(a);
      for (int j = 0; j < V; ++j) acc[j] = _mm256_fmadd_ps(av, Load8(v + 8 * j), acc[j]);
    }
  }
  const __m256 inv_sum = _mm256_set1_ps(1.0f / sum);
  for (int j = 0; j < V; ++j) _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(acc[j], inv_sum));
}

#endif

template <typename T>
void Attend(const float* q, const PagedRows<T>& keys, const PagedRows<T>& values, int context, int head_dim,
            float* out) {
#ifdef INFERD_ATTENTION_AVX2
  switch (head_dim) {
    case 8: return AttendAvx2<1>(q, keys, values, context, out);
    case 16: return AttendAvx2<2>(q, keys, values, context, out);
    case 32: return AttendAvx2<4>(q, keys, values, context, out);
    case 64: return AttendAvx2<8>(q, keys, values, context, out);
    case 128: return AttendAvx2<16>(q, keys, values, context, out);
    case 256: return AttendAvx2<32>(q, keys, values, context, out);
    default: break;
  }
#endif
  AttendPortable(q, keys, values, context, head_dim, out);
}

}  // namespace

void AttendPaged(const float* q, const PagedRows<float>& keys, const PagedRows<float>& values, int context,
                 int head_dim, float* out) {
  Attend(q, keys, values, context, head_dim, out);
}

void AttendPaged(const float* q, const PagedRows<uint16_t>& keys, const PagedRows<uint16_t>& values, int context,
                 int head_dim, float* out) {
  Attend(q, keys, values, context, head_dim, out);
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

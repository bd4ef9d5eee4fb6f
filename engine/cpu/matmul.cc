#include "engine/cpu/matmul.h"

#include <algorithm>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace inferd::cpu {
namespace {

// Eight float lanes: AVX2 registers where the target has them (x86-64-v3,
// the default build), GCC's generic vectors elsewhere.
#if defined(__AVX2__) && defined(__FMA__)
using V8 = __m256;
inline V8 Zero() { return _mm256_setzero_ps(); }
inline V8 Load(const float* p) { return _mm256_loadu_ps(p); }
inline V8 MulAdd(V8 a, V8 b, V8 acc) { return _mm256_fmadd_ps(a, b, acc); }
inline float Lane(V8 v, int i) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  return lanes[i];
}
#else
typedef float V8 __attribute__((vector_size(32)));
inline V8 Zero() { return V8{}; }
inline V8 Load(const float* p) {
  V8 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
inline V8 MulAdd(V8 a, V8 b, V8 acc) { return acc + a * b; }
inline float Lane(V8 v, int i) { return v[i]; }
#endif

// The fixed horizontal reduction every dot product ends with.
inline float Reduce(V8 v) {
  alignas(32) float l[8];
  for (int i = 0; i < 8; ++i) l[i] = Lane(v, i);
  return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}

// A register tile: MT rows of x against NT rows of w. Each accumulator sees
// the same operations as in any other tile shape, which is what keeps the
// result independent of how rows were grouped.
template <int MT, int NT>
inline void Tile(const float* x, int ldx, const float* w, int ldw, int k, float* out, int ldo) {
  // Fully unrolled, so that the MT x NT accumulators live in registers.
  V8 acc[MT][NT];
#pragma GCC unroll 4
  for (int i = 0; i < MT; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
  const int k8 = k & ~7;
  for (int kk = 0; kk < k8; kk += 8) {
    V8 wv[NT];
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) wv[j] = Load(w + j * ldw + kk);
#pragma GCC unroll 4
    for (int i = 0; i < MT; ++i) {
      const V8 xv = Load(x + i * ldx + kk);
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) acc[i][j] = MulAdd(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MT; ++i) {
    for (int j = 0; j < NT; ++j) {
      float s = Reduce(acc[i][j]);
      for (int kk = k8; kk < k; ++kk) s += x[i * ldx + kk] * w[j * ldw + kk];
      out[i * ldo + j] = s;
    }
  }
}

template <int NT>
inline void RowsAgainstTile(const float* x, int rows, int k, const float* w, float* out, int ldo) {
  int m = 0;
  for (; m + 4 <= rows; m += 4) Tile<4, NT>(x + m * k, k, w, k, k, out + m * ldo, ldo);
  for (; m < rows; ++m) Tile<1, NT>(x + m * k, k, w, k, k, out + m * ldo, ldo);
}

}  // namespace

float Dot(const float* a, const float* b, int n) {
  float out;
  Tile<1, 1>(a, n, b, n, n, &out, 1);
  return out;
}

void MatMul(const float* x, int rows, int in_features, const float* w, int out_features, float* out) {
  // Blocks of weight rows (the unit of parallel work) and of x rows, small
  // enough that both stay in L2 while the tiles sweep over them.
  constexpr int kWeightBlock = 32;
  constexpr int kRowBlock = 64;
  const int num_blocks = (out_features + kWeightBlock - 1) / kWeightBlock;
  const bool parallel = static_cast<long>(rows) * out_features * in_features > (1L << 15);
#pragma omp parallel for schedule(static) if (parallel)
  for (int b = 0; b < num_blocks; ++b) {
    const int n0 = b * kWeightBlock;
    const int n1 = std::min(out_features, n0 + kWeightBlock);
    for (int m0 = 0; m0 < rows; m0 += kRowBlock) {
      const int m_count = std::min(rows - m0, kRowBlock);
      const float* xb = x + static_cast<long>(m0) * in_features;
      float* ob = out + static_cast<long>(m0) * out_features;
      int n = n0;
      for (; n + 4 <= n1; n += 4) {
        RowsAgainstTile<4>(xb, m_count, in_features, w + static_cast<long>(n) * in_features, ob + n,
                           out_features);
      }
      for (; n < n1; ++n) {
        RowsAgainstTile<1>(xb, m_count, in_features, w + static_cast<long>(n) * in_features, ob + n,
                           out_features);
      }
    }
  }
}

}  // namespace inferd::cpu

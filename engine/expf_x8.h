// expf on 8 floats at once that returns, bit for bit, what glibc's expf
// returns (glibc >= 2.28, whose x86-64 build picks its FMA variant on every
// CPU with FMA, as x86-64-v3 requires). The sampler exponentiates a whole
// vocabulary per token on the engine thread; one libm call per entry was
// most of a step's sampling time, and a different exp (libmvec's, a
// polynomial of our own) would change which token a seeded request draws.
//
// The algorithm is glibc's sysdeps/ieee754/flt-32/e_expf.c with its
// __exp2f_data table, in double precision, with the same operations fused
// as GCC fuses them in __expf_fma; tests/engine/expf_x8_test.cc checks it
// against std::exp over the float range.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define INFERD_EXPF_X8 1
#endif

namespace inferd {

#if INFERD_EXPF_X8
namespace expf_internal {

// 2^(i/32) as bits, minus i << 47 (the exponent that ki adds back).
alignas(64) inline constexpr uint64_t kTable[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};
inline constexpr double kInvLn2N = 0x1.71547652b82fep+5;  // 32 / ln 2
inline constexpr double kC0 = 0x1.c6af84b912394p-20;
inline constexpr double kC1 = 0x1.ebfce50fac4f3p-13;
inline constexpr double kC2 = 0x1.62e42ff0c52d6p-6;
inline constexpr double kShift = 0x1.8p+52;
// Where glibc leaves its main path: above, the result overflows; below the
// first, it is 0; between the two, the smallest subnormal.
inline constexpr float kOverflow = 0x1.62e42ep6f;
inline constexpr float kUnderflow = -0x1.9fe368p6f;
inline constexpr float kMayUnderflow = -0x1.9d1d9ep6f;

// The main path on 4 lanes, in double: exp(x) = 2^(k/32) * 2^(r/32).
inline __m128 MainPath4(__m128 x) {
  const __m256d xd = _mm256_cvtps_pd(x);
  const __m256d shift = _mm256_set1_pd(kShift);
  const __m256d kd_shifted = _mm256_fmadd_pd(_mm256_set1_pd(kInvLn2N), xd, shift);  // one rounding, as glibc
  const __m256i ki = _mm256_castpd_si256(kd_shifted);
  const __m256d kd = _mm256_sub_pd(kd_shifted, shift);
  const __m256d r = _mm256_fmsub_pd(_mm256_set1_pd(kInvLn2N), xd, kd);
  const __m256i index = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
  const __m256i t = _mm256_add_epi64(
      _mm256_i64gather_epi64(reinterpret_cast<const long long*>(kTable), index, 8), _mm256_slli_epi64(ki, 47));
  const __m256d s = _mm256_castsi256_pd(t);
  const __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(kC0), _mm256_set1_pd(kC1));
  const __m256d r2 = _mm256_mul_pd(r, r);
  __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(kC2), _mm256_set1_pd(1.0));
  y = _mm256_fmadd_pd(z, r2, y);
  return _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
}

}  // namespace expf_internal

// std::exp of each lane.
inline __m256 ExpfX8(__m256 x) {
  using namespace expf_internal;
  __m256 y = _mm256_set_m128(MainPath4(_mm256_extractf128_ps(x, 1)), MainPath4(_mm256_castps256_ps128(x)));
  // glibc's special cases, in its order of precedence (NaN lanes fail every
  // ordered compare and take x + x last).
  y = _mm256_blendv_ps(y, _mm256_set1_ps(0x1p-149f), _mm256_cmp_ps(x, _mm256_set1_ps(kMayUnderflow), _CMP_LT_OQ));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(kUnderflow), _CMP_LT_OQ));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(kOverflow), _CMP_GT_OQ));
  return _mm256_blendv_ps(y, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif  // INFERD_EXPF_X8

}  // namespace inferd

#include "engine/cpu/kernels.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/model/float16.h"
#include "engine/cpu/kernel_parts.h"

namespace inferd::cpu {
namespace parts {

void F32ToFloat(const void* row, float* out, int64_t n) { std::memcpy(out, row, static_cast<size_t>(n) * 4); }

void F16ToFloat(const void* row, float* out, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(row);
  for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(h[i]);
}

void BF16ToFloat(const void* row, float* out, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(row);
  for (int64_t i = 0; i < n; ++i) out[i] = BFloat16ToFloat(h[i]);
}

void Q8_0ToFloat(const void* row, float* out, int64_t n) {
  const uint8_t* block = static_cast<const uint8_t*>(row);
  for (int64_t b = 0; b < n / kQ8_0BlockSize; ++b, block += kQ8_0BlockBytes) {
    uint16_t d_bits;
    std::memcpy(&d_bits, block, 2);
    const float d = HalfToFloat(d_bits);
    const int8_t* q = reinterpret_cast<const int8_t*>(block + 2);
    for (int i = 0; i < kQ8_0BlockSize; ++i) out[b * kQ8_0BlockSize + i] = d * static_cast<float>(q[i]);
  }
}

void FloatToF32(const float* x, void* row, int64_t n) { std::memcpy(row, x, static_cast<size_t>(n) * 4); }

void FloatToF16(const float* x, void* row, int64_t n) {
  uint16_t* h = static_cast<uint16_t*>(row);
  for (int64_t i = 0; i < n; ++i) h[i] = FloatToHalf(x[i]);
}

void FloatToBF16(const float* x, void* row, int64_t n) {
  uint16_t* h = static_cast<uint16_t*>(row);
  for (int64_t i = 0; i < n; ++i) h[i] = FloatToBFloat16(x[i]);
}

// ggml's quantize_row_q8_0_ref: the scale is stored as fp16, the quants are
// rounded with the unrounded scale.
void FloatToQ8_0(const float* x, void* row, int64_t n) {
  uint8_t* block = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < n / kQ8_0BlockSize; ++b, block += kQ8_0BlockBytes) {
    const float* xb = x + b * kQ8_0BlockSize;
    float amax = 0.0f;
    for (int i = 0; i < kQ8_0BlockSize; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t d_bits = FloatToHalf(d);
    std::memcpy(block, &d_bits, 2);
    int8_t* q = reinterpret_cast<int8_t*>(block + 2);
    for (int i = 0; i < kQ8_0BlockSize; ++i) q[i] = static_cast<int8_t>(std::roundf(xb[i] * id));
  }
}

}  // namespace parts

namespace {

KernelSet Assemble(const char* isa, const parts::IsaKernels& k) {
  using parts::BF16ToFloat;
  using parts::F16ToFloat;
  using parts::F32ToFloat;
  using parts::Q8_0ToFloat;
  KernelSet set{isa, {}};
  set.types[static_cast<int>(WeightType::kF32)] = {F32ToFloat, parts::FloatToF32, k.gemm[0], false, k.gemm_panels[0]};
  set.types[static_cast<int>(WeightType::kF16)] = {F16ToFloat, parts::FloatToF16, k.gemm[1], false, k.gemm_panels[1]};
  set.types[static_cast<int>(WeightType::kBF16)] = {BF16ToFloat, parts::FloatToBF16, k.gemm[2], false,
                                                     k.gemm_panels[2]};
  set.types[static_cast<int>(WeightType::kQ8_0)] = {Q8_0ToFloat, parts::FloatToQ8_0, k.gemm[3], true, k.gemm_panels[3]};
  return set;
}

}  // namespace

const KernelSet& PortableKernels() {
  static const KernelSet set = Assemble("portable", parts::PortableIsaKernels());
  return set;
}

const KernelSet* Avx2Kernels() {
  static const KernelSet* set = []() -> const KernelSet* {
    parts::IsaKernels k;
    if (!parts::Avx2IsaKernels(&k)) return nullptr;
#if defined(__x86_64__)
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c")) {
      return nullptr;
    }
#endif
    return new KernelSet(Assemble("avx2", k));
  }();
  return set;
}

const KernelSet* Avx512Kernels() {
  static const KernelSet* set = []() -> const KernelSet* {
#if defined(__x86_64__)
    // The AVX-512 file is compiled on top of the x86-64-v3 baseline.
    if (Avx2Kernels() == nullptr) return nullptr;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vnni")) {
      return nullptr;
    }
    parts::IsaKernels k;
    if (!parts::Avx512IsaKernels(&k)) return nullptr;
    return new KernelSet(Assemble("avx512", k));
#else
    return nullptr;
#endif
  }();
  return set;
}

std::vector<const KernelSet*> AvailableKernelSets() {
  std::vector<const KernelSet*> sets = {&PortableKernels()};
  if (Avx2Kernels() != nullptr) sets.push_back(Avx2Kernels());
  if (Avx512Kernels() != nullptr) sets.push_back(Avx512Kernels());
  return sets;
}

const KernelSet* KernelSetNamed(std::string_view isa) {
  for (const KernelSet* set : AvailableKernelSets()) {
    if (isa == set->isa) return set;
  }
  return nullptr;
}

const KernelSet& ActiveKernels() {
  static const KernelSet& set = []() -> const KernelSet& {
    const KernelSet& best = *AvailableKernelSets().back();
    const char* env = std::getenv("INFERD_CPU_KERNELS");
    if (env == nullptr || *env == '\0') return best;
    if (const KernelSet* chosen = KernelSetNamed(env); chosen != nullptr) return *chosen;
    std::string names;
    for (const KernelSet* s : AvailableKernelSets()) names += std::string(names.empty() ? "" : ", ") + s->isa;
    std::fprintf(stderr, "inferd: INFERD_CPU_KERNELS=%s is not a kernel set this CPU runs (%s); using %s\n", env,
                 names.c_str(), best.isa);
    return best;
  }();
  return set;
}

namespace {

// One 32-element block: scale = max|x| / 127, q = roundf(x / scale), and
// the sum of the q.
void QuantizeBlockQ8(const float* xb, int8_t* q, float* scale, int32_t* sum) {
#if defined(__AVX2__)
  // Eight lanes, bit for bit the scalar code below: max, the division and
  // the products are the same IEEE operations, and roundf (half away from
  // zero) is trunc(t) plus sign(t) where |t - trunc(t)| >= 0.5 (exact).
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 v[4];
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(xb + 8 * i);
    m = _mm256_max_ps(_mm256_and_ps(v[i], abs_mask), m);  // a NaN x is skipped, as by fmax
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *scale = d;
  const __m256 idv = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  __m256i n[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 t = _mm256_mul_ps(v[i], idv);
    const __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 away = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(t, r), abs_mask), half, _CMP_GE_OQ);
    const __m256 step = _mm256_and_ps(away, _mm256_or_ps(one, _mm256_andnot_ps(abs_mask, t)));
    n[i] = _mm256_cvttps_epi32(_mm256_add_ps(r, step));
  }
  const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  // |n| <= 127, so the int32 lanes are the quants exactly.
  const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(n[0], n[1]), _mm256_add_epi32(n[2], n[3]));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
  *sum = _mm_cvtsi128_si32(_mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1))));
#else
  float amax = 0.0f;
  for (int i = 0; i < kQ8_0BlockSize; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *scale = d;
  *sum = 0;
  for (int i = 0; i < kQ8_0BlockSize; ++i) {
    q[i] = static_cast<int8_t>(std::roundf(xb[i] * id));
    *sum += q[i];
  }
#endif
}

}  // namespace

void QuantizeActivationsQ8(const float* x, int rows, int cols, int8_t* q8, float* scales, int32_t* sums) {
  const int blocks = cols / kQ8_0BlockSize;
  for (int64_t b = 0; b < static_cast<int64_t>(rows) * blocks; ++b) {
    QuantizeBlockQ8(x + b * kQ8_0BlockSize, q8 + b * kQ8_0BlockSize, scales + b, sums + b);
  }
}

}  // namespace inferd::cpu

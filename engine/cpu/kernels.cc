#include "engine/cpu/kernels.h"

#include <cmath>
#include <cstring>

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
  KernelSet set{isa, k.dot, {}};
  set.types[static_cast<int>(WeightType::kF32)] = {F32ToFloat, parts::FloatToF32, k.gemm[0], false};
  set.types[static_cast<int>(WeightType::kF16)] = {F16ToFloat, parts::FloatToF16, k.gemm[1], false};
  set.types[static_cast<int>(WeightType::kBF16)] = {BF16ToFloat, parts::FloatToBF16, k.gemm[2], false};
  set.types[static_cast<int>(WeightType::kQ8_0)] = {Q8_0ToFloat, parts::FloatToQ8_0, k.gemm[3], true};
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

const KernelSet& ActiveKernels() {
  static const KernelSet& set = Avx2Kernels() != nullptr ? *Avx2Kernels() : PortableKernels();
  return set;
}

void QuantizeActivationsQ8(const float* x, int rows, int cols, int8_t* q8, float* scales) {
  const int blocks = cols / kQ8_0BlockSize;
  for (int64_t b = 0; b < static_cast<int64_t>(rows) * blocks; ++b) {
    const float* xb = x + b * kQ8_0BlockSize;
    float amax = 0.0f;
    for (int i = 0; i < kQ8_0BlockSize; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    scales[b] = d;
    for (int i = 0; i < kQ8_0BlockSize; ++i) q8[b * kQ8_0BlockSize + i] = static_cast<int8_t>(std::roundf(xb[i] * id));
  }
}

}  // namespace inferd::cpu

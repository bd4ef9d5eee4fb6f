// Plain C++ kernels: the fallback for CPUs without AVX2, and the second
// implementation the tests hold the vector kernels against. Each output
// element is one dot product in a fixed order, so these are batch-invariant
// too.
#include <cstring>

#include "engine/model/float16.h"
#include "engine/cpu/kernel_parts.h"

namespace inferd::cpu::parts {
namespace {

// Weights of 16-bit floats or fp32, widened element by element.
template <float (*Widen)(const void*, int)>
void GemmFloat(const Activations& x, const void* w, size_t w_row_bytes, int n_out, float* out, int ldo) {
  for (int j = 0; j < n_out; ++j) {
    const void* wj = static_cast<const char*>(w) + j * w_row_bytes;
    for (int i = 0; i < x.rows; ++i) {
      const float* xi = x.f32 + static_cast<size_t>(i) * x.cols;
      float s = 0.0f;
      for (int k = 0; k < x.cols; ++k) s += xi[k] * Widen(wj, k);
      out[static_cast<size_t>(i) * ldo + j] = s;
    }
  }
}

float WidenF32(const void* row, int k) { return static_cast<const float*>(row)[k]; }
float WidenF16(const void* row, int k) { return HalfToFloat(static_cast<const uint16_t*>(row)[k]); }
float WidenBF16(const void* row, int k) { return BFloat16ToFloat(static_cast<const uint16_t*>(row)[k]); }

// Per block an exact integer dot product, then one fp32 multiply-add by the
// product of the two scales.
void GemmQ8_0(const Activations& x, const void* w, size_t w_row_bytes, int n_out, float* out, int ldo) {
  const int blocks = x.cols / kQ8_0BlockSize;
  for (int j = 0; j < n_out; ++j) {
    const uint8_t* wj = static_cast<const uint8_t*>(w) + j * w_row_bytes;
    for (int i = 0; i < x.rows; ++i) {
      const int8_t* xq = x.q8 + static_cast<size_t>(i) * x.cols;
      const float* xd = x.q8_scales + static_cast<size_t>(i) * blocks;
      float s = 0.0f;
      for (int b = 0; b < blocks; ++b) {
        const uint8_t* block = wj + b * kQ8_0BlockBytes;
        uint16_t d_bits;
        std::memcpy(&d_bits, block, 2);
        const int8_t* wq = reinterpret_cast<const int8_t*>(block + 2);
        int32_t isum = 0;
        for (int k = 0; k < kQ8_0BlockSize; ++k) isum += int32_t{wq[k]} * int32_t{xq[b * kQ8_0BlockSize + k]};
        s += (HalfToFloat(d_bits) * xd[b]) * static_cast<float>(isum);
      }
      out[static_cast<size_t>(i) * ldo + j] = s;
    }
  }
}

}  // namespace

IsaKernels PortableIsaKernels() {
  return {{GemmFloat<WidenF32>, GemmFloat<WidenF16>, GemmFloat<WidenBF16>, GemmQ8_0}};
}

}  // namespace inferd::cpu::parts

// The pieces the kernel sets of kernels.cc are assembled from (internal to
// engine/cpu/): row conversions shared by every set, and each ISA's GEMMs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/cpu/kernels.h"

namespace inferd::cpu::parts {

void F32ToFloat(const void* row, float* out, int64_t n);
void F16ToFloat(const void* row, float* out, int64_t n);
void BF16ToFloat(const void* row, float* out, int64_t n);
void Q8_0ToFloat(const void* row, float* out, int64_t n);
void FloatToF32(const float* x, void* row, int64_t n);
void FloatToF16(const float* x, void* row, int64_t n);
void FloatToBF16(const float* x, void* row, int64_t n);
void FloatToQ8_0(const float* x, void* row, int64_t n);

using GemmFn = void (*)(const Activations& x, const void* w, size_t w_row_bytes, int n_out, float* out, int ldo);
using GemmPanelsFn = void (*)(const Activations& x, const void* panels, int n_out, float* out, int ldo);
struct IsaKernels {
  GemmFn gemm[4];  // by WeightType
  GemmPanelsFn gemm_panels[4] = {};  // by WeightType; nullptr: row-major only
};

IsaKernels PortableIsaKernels();
// False where the build has no AVX2 code.
bool Avx2IsaKernels(IsaKernels* out);
// False where the build has no AVX-512 code (kernels_avx512.cc). The code
// itself needs AVX-512 F/BW/VL/DQ/VNNI: callers check CPUID first.
bool Avx512IsaKernels(IsaKernels* out);

}  // namespace inferd::cpu::parts

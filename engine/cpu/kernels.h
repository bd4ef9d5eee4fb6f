// The CPU backend's per-dtype kernels behind one dispatch table, chosen once
// from CPUID (llama.cpp's ggml-cpu type_traits): for each weight type a row
// dequantizer, a row quantizer, a GEMM over a block of weight rows, and
// (AVX-512) a GEMM over weights packed in panels. The
// forward pass stays dtype-blind: it calls MatMul (matmul.h), which prepares
// the activations the way the weight type's GEMM reads them and splits the
// work.
//
// Batch invariance: every GEMM computes each output element with the same
// sequence of floating-point operations whatever the number of activation
// rows, their grouping into register tiles, or the thread count. A table may
// differ from another table in rounding; one table never differs from itself,
// and its panel GEMM never differs from itself either (it may differ from the
// row-major one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/model/model_weights.h"

namespace inferd::cpu {

// Activation rows as a GEMM reads them: always the floats; for Q8_0 weights
// also each 32-element block quantized to int8 with one fp32 scale
// (x ≈ q8_scales[r][b] * q8[r][32b + i], q in [-127, 127]) and the sum of
// its quants (the panel GEMM's offset correction).
// Rows on 64-byte boundaries (f32 aligned to 64, cols % 16 == 0) let the
// AVX-512 tiles load whole cache lines: misaligned ones (glibc's large
// blocks start 16 bytes past a page) cost 20-30% at prefill sizes; so do
// f32 weight rows off 64 bytes, 10-15%.
struct Activations {
  int rows = 0;
  int cols = 0;                        // the weights' in_features
  const float* f32 = nullptr;          // [rows][cols]
  const int8_t* q8 = nullptr;          // [rows][cols]; only for Q8_0 weights
  const float* q8_scales = nullptr;    // [rows][cols / 32]
  const int32_t* q8_sums = nullptr;    // [rows][cols / 32]
};

struct TypeTraits {
  // One row of `n` stored elements to floats (token embedding lookup).
  void (*to_float)(const void* row, float* out, int64_t n);
  // `n` floats into one row of this type, rounding to nearest (conversion
  // at load, test data). Q8_0: GGUF's reference quantizer, n % 32 == 0.
  void (*from_float)(const float* x, void* row, int64_t n);
  // out[i * ldo + j] = sum_k x[i][k] * w[j][k] for i < x.rows, j < n_out,
  // where weight row j starts at w + j * w_row_bytes.
  void (*gemm)(const Activations& x, const void* w, size_t w_row_bytes, int n_out, float* out, int ldo);
  // Whether `gemm` reads Activations::q8 (MatMul quantizes x first).
  bool quantized_activations = false;
  // The same product over weights packed in panels (TensorLayout::kPanels16):
  // `panels` is the first of ceil(n_out / 16) panels of x.cols columns, and
  // out[i * ldo + j] is written for j < n_out. nullptr where this set
  // multiplies only row-major weights of the type; the CPU backend packs a
  // type's weights where the active set has this (PackWeightsForKernels).
  void (*gemm_panels)(const Activations& x, const void* panels, int n_out, float* out, int ldo) = nullptr;
};

struct KernelSet {
  const char* isa;  // "avx512", "avx2", "portable"
  TypeTraits types[4];  // indexed by WeightType

  const TypeTraits& operator[](WeightType type) const { return types[static_cast<int>(type)]; }
};

// The set the process uses, chosen on first use and fixed for the process:
// the best this CPU runs (avx512 > avx2 > portable), or the one named by the
// environment variable INFERD_CPU_KERNELS (avx512, avx2 or portable), to
// compare sets. A name this CPU does not run is not fatal: one line on
// stderr says so and the best set is used.
const KernelSet& ActiveKernels();
// Plain C++ loops: the fallback on CPUs without AVX2/FMA/F16C, and a second
// implementation for tests.
const KernelSet& PortableKernels();
// AVX2 + FMA + F16C; nullptr where the build or the CPU lacks them.
const KernelSet* Avx2Kernels();
// AVX-512 F/BW/VL/DQ/VNNI (kernels_avx512.cc, chosen by CPUID at run time
// over the x86-64-v3 build); nullptr where the build or the CPU lacks them.
const KernelSet* Avx512Kernels();
// Every set this CPU runs, from portable to the best.
std::vector<const KernelSet*> AvailableKernelSets();
// The set whose isa is `isa`, if this CPU runs it; else nullptr.
const KernelSet* KernelSetNamed(std::string_view isa);

// Quantizes activation rows for Q8_0 GEMMs, per 32-element block:
// scale = max|x| / 127, q = round(x / scale), sum = the sum of the q.
// cols % 32 == 0.
void QuantizeActivationsQ8(const float* x, int rows, int cols, int8_t* q8, float* scales, int32_t* sums);

}  // namespace inferd::cpu

#include "engine/cpu/matmul.h"

#include <algorithm>
#include <vector>

namespace inferd::cpu {

void MatMul(const KernelSet& kernels, const float* x, int rows, const Tensor& w, float* out) {
  const TypeTraits& traits = kernels[w.type];
  const int in_features = static_cast<int>(w.cols);
  const int out_features = static_cast<int>(w.rows);
  const size_t row_bytes = RowBytes(w.type, w.cols);
  Activations act{rows, in_features, x, nullptr, nullptr};
  if (traits.quantized_activations) {
    // Grow-only per calling thread: a steady workload allocates nothing.
    thread_local std::vector<int8_t> q8;
    thread_local std::vector<float> scales;
    const size_t n = static_cast<size_t>(rows) * in_features;
    if (q8.size() < n) q8.resize(n);
    if (scales.size() < n / kQ8_0BlockSize) scales.resize(n / kQ8_0BlockSize);
    QuantizeActivationsQ8(x, rows, in_features, q8.data(), scales.data());
    act.q8 = q8.data();
    act.q8_scales = scales.data();
  }
  // Blocks of weight rows (the unit of parallel work) and of x rows, small
  // enough that both stay in L2 while the tiles sweep over them.
  constexpr int kWeightBlock = 32;
  constexpr int kRowBlock = 64;
  const int num_blocks = (out_features + kWeightBlock - 1) / kWeightBlock;
  const bool parallel = static_cast<long>(rows) * out_features * in_features > (1L << 15);
#pragma omp parallel for schedule(static) if (parallel)
  for (int b = 0; b < num_blocks; ++b) {
    const int n0 = b * kWeightBlock;
    const int n_count = std::min(out_features, n0 + kWeightBlock) - n0;
    for (int m0 = 0; m0 < rows; m0 += kRowBlock) {
      const size_t offset = static_cast<size_t>(m0) * in_features;
      const Activations part{std::min(rows - m0, kRowBlock), in_features, act.f32 + offset,
                             act.q8 != nullptr ? act.q8 + offset : nullptr,
                             act.q8_scales != nullptr ? act.q8_scales + offset / kQ8_0BlockSize : nullptr};
      traits.gemm(part, static_cast<const char*>(w.data) + static_cast<size_t>(n0) * row_bytes, row_bytes, n_count,
                  out + static_cast<size_t>(m0) * out_features + n0, out_features);
    }
  }
}

void MatMul(const float* x, int rows, const Tensor& w, float* out) { MatMul(ActiveKernels(), x, rows, w, out); }

void DequantizeRow(const Tensor& t, int64_t r, float* out) { ActiveKernels()[t.type].to_float(t.row(r), out, t.cols); }

float Dot(const float* a, const float* b, int n) { return ActiveKernels().dot(a, b, n); }

}  // namespace inferd::cpu

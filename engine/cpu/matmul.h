// CPU matrix products of the forward pass, for weights of any stored type.
//
// Every output element is one dot product computed with the same sequence of
// floating-point operations whatever the number of rows in the batch or the
// thread count, so a sequence's logits do not depend on what else is batched
// with it (batch invariance: greedy outputs equal solo outputs exactly).
#pragma once

#include "engine/cpu/kernels.h"
#include "engine/model/model_weights.h"

namespace inferd::cpu {

// out[m][n] = sum_k x[m][k] * w[n][k] for m < rows, n < w.rows, with
// x: [rows][w.cols] floats and w: [w.rows][w.cols] of any WeightType
// (Q8_0 needs w.cols % 32 == 0). Parallel over w's rows with OpenMP. The
// first form uses ActiveKernels().
void MatMul(const float* x, int rows, const Tensor& w, float* out);
void MatMul(const KernelSet& kernels, const float* x, int rows, const Tensor& w, float* out);

// Row `r` of `t` as floats (token embedding lookup): t.cols values.
void DequantizeRow(const Tensor& t, int64_t r, float* out);

// sum_k a[k] * b[k] with ActiveKernels()' fp32 dot product.
float Dot(const float* a, const float* b, int n);

}  // namespace inferd::cpu

// CPU matrix kernels of the forward pass.
//
// Every output element is one dot product computed with the same sequence of
// floating-point operations whatever the number of rows in the batch or the
// thread count, so a sequence's logits do not depend on what else is batched
// with it (batch invariance: greedy outputs equal solo outputs exactly).
#pragma once

namespace inferd::cpu {

// out[m][n] = sum_k x[m][k] * w[n][k] for m < rows, n < out_features.
// x: [rows][in_features], w: [out_features][in_features] row-major.
// Parallel over out_features with OpenMP.
void MatMul(const float* x, int rows, int in_features, const float* w, int out_features, float* out);

// sum_k a[k] * b[k], with the same reduction order as MatMul.
float Dot(const float* a, const float* b, int n);

}  // namespace inferd::cpu

// CPU matrix products of the forward pass, for weights of any stored type.
//
// Every output element is one dot product computed with the same sequence of
// floating-point operations whatever the number of rows in the batch, the
// thread count or which thread took which block, so a sequence's logits do
// not depend on what else is batched with it (batch invariance: greedy
// outputs equal solo outputs exactly).
//
// The work is split into blocks of weight rows that threads take in turn
// (ThreadPool::ParallelFor); the weights of one product share a type and
// in_features, so every block costs the same bytes and both cores finish
// together.
#pragma once

#include "absl/types/span.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/thread_pool.h"
#include "engine/model/model_weights.h"

namespace inferd::cpu {

// out[m][n] = sum_k x[m][k] * w[n][k] for m < rows, n < w.rows, with
// x: [rows][w.cols] floats and w: [w.rows][w.cols] of any WeightType
// (Q8_0 needs w.cols % 32 == 0).
void MatMul(ThreadPool& pool, const KernelSet& kernels, const float* x, int rows, const Tensor& w, float* out);

// One product of a fused MatMul: out = x · w^T, [rows][w->rows].
struct MatMulPart {
  const Tensor* w;
  float* out;
};

// Several products over the same x (Q, K and V) in one parallel region, the
// blocks of every weight shared out together. Weights of different types or
// in_features run as separate MatMuls (same results, more regions).
void FusedMatMul(ThreadPool& pool, const KernelSet& kernels, const float* x, int rows,
                 absl::Span<const MatMulPart> parts);

// out = silu(x · w1^T) * (x · w3^T), [rows][w1.rows] (the gate and up
// projections of a SwiGLU feed-forward), in one region: each block of w1
// and w3 rows is multiplied and combined while it is in cache. `up` is
// scratch of the same size as out.
void SwiGluMatMul(ThreadPool& pool, const KernelSet& kernels, const float* x, int rows, const Tensor& w1,
                  const Tensor& w3, float* out, float* up);

// gate[i] = silu(gate[i]) * up[i] for i < count, 8 at a time where the
// build has AVX2, bit for bit the scalar float formula with glibc's expf.
void SiluMul(float* gate, const float* up, int count);

// Row `r` of `t` as floats (token embedding lookup): t.cols values.
void DequantizeRow(const Tensor& t, int64_t r, float* out);

}  // namespace inferd::cpu

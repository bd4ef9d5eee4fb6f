// The kernel parameters that every attention kernel reads (decode and both
// prefill kernels), filled from AttentionArgs in one place. DecodeParams
// (attention_decode.cu) and PrefillParams (attention_prefill.cu) derive from
// AttentionParams and add their own.
#pragma once

#include <cmath>

#include "cuda/attention_plan.h"
#include "cuda/kernels.h"

namespace inferd::cuda {

template <typename T>
struct AttentionParams {
  const T* qkv;
  int qkv_stride;
  const T* k_pool;
  const T* v_pool;
  T* out;
  int out_stride;
  int n_kv_heads;
  int head_dim;
  int block_size;
  int group;
  int head_chunks;
  float sqrt_head_dim;
  AttentionBatch batch;
};

template <typename T>
void FillAttentionParams(const AttentionArgs& args, AttentionParams<T>* p) {
  const AttentionShape& shape = args.shape;
  p->qkv = static_cast<const T*>(args.qkv);
  p->qkv_stride = args.qkv_stride;
  p->k_pool = static_cast<const T*>(args.k_pool);
  p->v_pool = static_cast<const T*>(args.v_pool);
  p->out = static_cast<T*>(args.out);
  p->out_stride = shape.n_heads * shape.head_dim;
  p->n_kv_heads = shape.n_kv_heads;
  p->head_dim = shape.head_dim;
  p->block_size = shape.block_size;
  p->group = shape.group();
  p->head_chunks = shape.head_chunks();
  p->sqrt_head_dim = sqrtf(static_cast<float>(shape.head_dim));
  p->batch = args.batch;
}

}  // namespace inferd::cuda

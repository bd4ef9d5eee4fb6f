#include "engine/model/model_weights.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace inferd {

void AdviseHugePages(void* data, size_t bytes) {
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  if (bytes < 2 * kHugePage) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  // Only advice: without THP (or on failure) we just get small pages.
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

std::string_view WeightTypeName(WeightType type) {
  switch (type) {
    case WeightType::kF32: return "float32";
    case WeightType::kF16: return "float16";
    case WeightType::kBF16: return "bfloat16";
    case WeightType::kQ8_0: return "q8_0";
  }
  return "unknown";
}

size_t RowBytes(WeightType type, int64_t cols) {
  switch (type) {
    case WeightType::kF32: return static_cast<size_t>(cols) * 4;
    case WeightType::kF16:
    case WeightType::kBF16: return static_cast<size_t>(cols) * 2;
    case WeightType::kQ8_0: return static_cast<size_t>(cols / kQ8_0BlockSize) * kQ8_0BlockBytes;
  }
  return 0;
}

void ScatterPanelRow(WeightType type, int64_t cols, int64_t r, const void* row, void* panels) {
  const char* in = static_cast<const char*>(row);
  char* out = static_cast<char*>(panels);
  if (type == WeightType::kQ8_0) {
    for (int64_t b = 0; b < cols / kQ8_0BlockSize; ++b) {
      const char* block = in + b * kQ8_0BlockBytes;
      std::memcpy(out + Q8PanelScale(r, b, cols), block, 2);
      for (int i = 0; i < kQ8_0BlockSize; ++i) {
        out[Q8PanelQuant(r, b * kQ8_0BlockSize + i, cols)] = static_cast<char>(block[2 + i] ^ 0x80);
      }
    }
    return;
  }
  const size_t element = RowBytes(type, 1);
  for (int64_t c = 0; c < cols; ++c) {
    std::memcpy(out + PanelElement(r, c, cols) * element, in + static_cast<size_t>(c) * element, element);
  }
}

void GatherPanelRow(WeightType type, int64_t cols, int64_t r, const void* panels, void* row) {
  const char* in = static_cast<const char*>(panels);
  char* out = static_cast<char*>(row);
  if (type == WeightType::kQ8_0) {
    for (int64_t b = 0; b < cols / kQ8_0BlockSize; ++b) {
      char* block = out + b * kQ8_0BlockBytes;
      std::memcpy(block, in + Q8PanelScale(r, b, cols), 2);
      for (int i = 0; i < kQ8_0BlockSize; ++i) {
        block[2 + i] = static_cast<char>(in[Q8PanelQuant(r, b * kQ8_0BlockSize + i, cols)] ^ 0x80);
      }
    }
    return;
  }
  const size_t element = RowBytes(type, 1);
  for (int64_t c = 0; c < cols; ++c) {
    std::memcpy(out + static_cast<size_t>(c) * element, in + PanelElement(r, c, cols) * element, element);
  }
}

size_t ModelWeights::TotalBytes() const {
  size_t total = token_embedding.bytes() + rms_final.bytes();
  if (wcls.data != token_embedding.data) total += wcls.bytes();
  for (const LayerWeights& l : layers) {
    for (const Tensor* t : {&l.rms_att, &l.wq, &l.wk, &l.wv, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm, &l.wo,
                            &l.rms_ffn, &l.w1, &l.w2, &l.w3}) {
      total += t->bytes();
    }
  }
  return total;
}

std::unique_ptr<ModelWeights> ModelWeights::AllocateF32(const ModelConfig& config) {
  auto w = std::make_unique<ModelWeights>();
  w->config = config;
  const int64_t d = config.dim, h = config.hidden_dim, l = config.n_layers;
  const int64_t v = config.vocab_size, q = config.q_dim(), kv = config.kv_dim();
  const size_t n = static_cast<size_t>(config.NumParameters());
  // Ask for transparent huge pages before the buffer is first touched:
  // gigabytes of 4 KiB page faults cost seconds (more in a VM), and the
  // forward pass streams through every weight anyway.
  auto storage = std::make_shared<std::vector<float>>();
  storage->reserve(n);
  AdviseHugePages(storage->data(), n * sizeof(float));
  storage->resize(n);
  w->f32_storage_ = storage->data();
  w->f32_storage_size_ = n;
  w->owners.push_back(storage);

  // Slots in llama2.c file order, so the fp32 loader can read each section
  // straight into place.
  float* p = storage->data();
  auto take = [&p](int64_t rows, int64_t cols) {
    Tensor t{WeightType::kF32, p, rows, cols};
    p += rows * cols;
    return t;
  };
  auto slice = [](const Tensor& all, int64_t i, int64_t rows, int64_t cols) {
    return Tensor{WeightType::kF32, all.f32() + i * rows * cols, rows, cols};
  };
  w->token_embedding = take(v, d);
  const Tensor rms_att = take(l, d);
  const Tensor wq = take(l * q, d);
  const Tensor wk = take(l * kv, d);
  const Tensor wv = take(l * kv, d);
  const Tensor wo = take(l * d, q);
  const Tensor rms_ffn = take(l, d);
  const Tensor w1 = take(l * h, d);
  const Tensor w2 = take(l * d, h);
  const Tensor w3 = take(l * h, d);
  w->rms_final = take(1, d);
  w->wcls = config.shared_classifier ? w->token_embedding : take(v, d);
  // Only the llama2.c layout lives here: biases and q/k norms come from
  // formats whose loaders place tensors themselves.
  w->layers.resize(static_cast<size_t>(l));
  for (int64_t i = 0; i < l; ++i) {
    LayerWeights& layer = w->layers[static_cast<size_t>(i)];
    layer.rms_att = slice(rms_att, i, 1, d);
    layer.wq = slice(wq, i, q, d);
    layer.wk = slice(wk, i, kv, d);
    layer.wv = slice(wv, i, kv, d);
    layer.wo = slice(wo, i, d, q);
    layer.rms_ffn = slice(rms_ffn, i, 1, d);
    layer.w1 = slice(w1, i, h, d);
    layer.w2 = slice(w2, i, d, h);
    layer.w3 = slice(w3, i, h, d);
  }
  return w;
}

}  // namespace inferd

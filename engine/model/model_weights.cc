#include "engine/model/model_weights.h"

#include <sys/mman.h>

#include <cstdint>
#include <memory>

namespace inferd {
namespace {

void AdviseHugePages(void* data, size_t bytes) {
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  if (bytes < 2 * kHugePage) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  // Only advice: without THP (or on failure) we just get small pages.
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

}  // namespace

std::unique_ptr<ModelWeights> ModelWeights::Allocate(const ModelConfig& config) {
  auto w = std::make_unique<ModelWeights>();
  w->config = config;
  const int64_t d = config.dim, h = config.hidden_dim, l = config.n_layers;
  const int64_t v = config.vocab_size, kv = config.kv_dim();
  const size_t n = static_cast<size_t>(config.NumParameters());
  // Ask for transparent huge pages before resize() first touches the
  // buffer: gigabytes of 4 KiB page faults cost seconds (more in a VM), and
  // the forward pass streams through every weight anyway.
  w->storage.reserve(n);
  AdviseHugePages(w->storage.data(), n * sizeof(float));
  w->storage.resize(n);

  // Slots in llama2.c file order, so the fp32 loader can read each section
  // straight into place.
  float* p = w->storage.data();
  auto take = [&p](int64_t n) {
    float* slot = p;
    p += n;
    return slot;
  };
  w->token_embedding = take(v * d);
  const float* rms_att = take(l * d);
  const float* wq = take(l * d * d);
  const float* wk = take(l * kv * d);
  const float* wv = take(l * kv * d);
  const float* wo = take(l * d * d);
  const float* rms_ffn = take(l * d);
  const float* w1 = take(l * h * d);
  const float* w2 = take(l * d * h);
  const float* w3 = take(l * h * d);
  w->rms_final = take(d);
  w->wcls = config.shared_classifier ? w->token_embedding : take(v * d);

  w->layers.resize(static_cast<size_t>(l));
  for (int64_t i = 0; i < l; ++i) {
    LayerWeights& layer = w->layers[static_cast<size_t>(i)];
    layer.rms_att = rms_att + i * d;
    layer.wq = wq + i * d * d;
    layer.wk = wk + i * kv * d;
    layer.wv = wv + i * kv * d;
    layer.wo = wo + i * d * d;
    layer.rms_ffn = rms_ffn + i * d;
    layer.w1 = w1 + i * h * d;
    layer.w2 = w2 + i * d * h;
    layer.w3 = w3 + i * h * d;
  }
  return w;
}

}  // namespace inferd

#include "engine/model/dummy_weights.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/cpu/thread_pool.h"

namespace inferd {
namespace {

struct Preset {
  const char* name;
  int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len;
  float rope_theta;
  // Real Llama 2/3 checkpoints have a separate output matrix; `tiny` shares
  // it to stay as small as stories260K.
  bool shared_classifier;
};

constexpr Preset kPresets[] = {
    {"tiny", 64, 172, 2, 8, 4, 512, 512, 10000.0f, true},
    {"llama-110m", 768, 2048, 12, 12, 12, 32000, 1024, 10000.0f, false},
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, false},
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f, false},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f, false},
};

constexpr float kStddev = 0.02f;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Bytes of memory we may plan to fill: physical RAM, or the cgroup (v2)
// limit when a container has a smaller one, as exceeding either gets us
// killed rather than an error.
int64_t AvailableMemoryBytes() {
  int64_t bytes = int64_t{sysconf(_SC_PHYS_PAGES)} * int64_t{sysconf(_SC_PAGE_SIZE)};
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  int64_t limit = 0;
  if (cgroup >> limit && limit > 0 && limit < bytes) bytes = limit;
  return bytes;
}

}  // namespace

std::vector<std::string> DummyPresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

absl::StatusOr<ModelConfig> DummyPresetConfig(const std::string& preset) {
  for (const Preset& p : kPresets) {
    if (preset != p.name) continue;
    ModelConfig c;
    c.name = absl::StrCat("dummy:", p.name);
    c.dim = p.dim;
    c.hidden_dim = p.hidden_dim;
    c.n_layers = p.n_layers;
    c.n_heads = p.n_heads;
    c.n_kv_heads = p.n_kv_heads;
    c.vocab_size = p.vocab_size;
    c.max_seq_len = p.max_seq_len;
    c.rope_theta = p.rope_theta;
    c.shared_classifier = p.shared_classifier;
    return c;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dummy preset \"", preset,
                                                 "\"; known presets: ",
                                                 absl::StrJoin(DummyPresetNames(), ", ")));
}

absl::StatusOr<std::unique_ptr<ModelWeights>> MakeDummyWeights(const ModelConfig& config, uint64_t seed,
                                                                int num_threads) {
  if (absl::Status s = config.Validate(config.name.empty() ? "dummy" : config.name); !s.ok()) {
    return s;
  }
  const int64_t needed = config.NumParameters() * int64_t{sizeof(float)};
  const int64_t available = AvailableMemoryBytes();
  // Leave room for the KV cache, activations and the OS.
  if (needed > available / 5 * 4) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: fp32 weights need %.1f GB but this machine has %.1f GB of memory (at most 80%% "
        "may hold weights); pick a smaller preset",
        config.name, needed / 1e9, available / 1e9));
  }

  std::unique_ptr<ModelWeights> w = ModelWeights::AllocateF32(config);
  float* data = w->mutable_f32_storage();
  const int64_t n = static_cast<int64_t>(w->f32_storage_size());

  // Every element's value is a function of (seed, its index) alone: one
  // splitmix64 draw per pair of elements, turned into two normals by
  // Box-Muller. So the bytes are the same for any thread count.
  const uint64_t key = SplitMix64(seed);
  const int64_t num_pairs = (n + 1) / 2;
  constexpr int64_t kChunkPairs = int64_t{1} << 15;
  // A pool of its own, gone when the weights are made: the CPU backend's
  // threads are then the only ones that compute.
  cpu::ThreadPool pool(num_threads);
  pool.ParallelFor(num_pairs, kChunkPairs, [&](int64_t begin, int64_t end) {
    for (int64_t pair = begin; pair < end; ++pair) {
      const uint64_t h = SplitMix64(key + static_cast<uint64_t>(pair));
      // u1 in (0, 1] so the log is finite; 24 bits each, exact in float.
      const float u1 = static_cast<float>((h >> 40) + 1) * 0x1p-24f;
      const float u2 = static_cast<float>(h & 0xffffff) * 0x1p-24f;
      const float r = kStddev * std::sqrt(-2.0f * std::log(u1));
      const float theta = 6.28318530718f * u2;
      data[2 * pair] = r * std::cos(theta);
      if (2 * pair + 1 < n) data[2 * pair + 1] = r * std::sin(theta);
    }
  });

  // Norm weights of 1 make RMSNorm a pure normalization, as at init.
  auto fill_ones = [&](const Tensor& view, int64_t count) {
    float* p = data + (view.f32() - w->f32_storage());
    std::fill(p, p + count, 1.0f);
  };
  for (const LayerWeights& layer : w->layers) {
    fill_ones(layer.rms_att, config.dim);
    fill_ones(layer.rms_ffn, config.dim);
  }
  fill_ones(w->rms_final, config.dim);
  return w;
}

}  // namespace inferd

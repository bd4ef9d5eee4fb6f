// The dummy-weight generator of engine/dummy_weights.cc, element by element,
// for host and device: element i of the fp32 storage is a function of (seed,
// i) alone. The float library calls (log, sqrt, cos, sin) of the CPU
// generator depend only on 24-bit integers, so the host tabulates them once
// with the very same expressions (BuildDummyTables) and the device looks them
// up: device-generated weights equal MakeDummyWeights bit for bit, whatever
// the device's own math library would round differently.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define INFERD_HOST_DEVICE __host__ __device__
#else
#define INFERD_HOST_DEVICE
#endif

namespace inferd::cuda {

inline constexpr int64_t kDummyTableSize = int64_t{1} << 24;

INFERD_HOST_DEVICE inline uint64_t DummySplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The per-model key the CPU generator derives from the seed.
inline uint64_t DummyKey(uint64_t seed) { return DummySplitMix64(seed); }

// Element `index` of the storage (before norm weights are set to 1): one
// splitmix64 draw per pair of elements, Box-Muller with radius and angle
// looked up by their 24-bit inputs. A single float product, so no
// contraction can change its rounding.
INFERD_HOST_DEVICE inline float DummyValue(uint64_t key, int64_t index, const float* radius, const float* cosine,
                                           const float* sine) {
  const uint64_t h = DummySplitMix64(key + static_cast<uint64_t>(index >> 1));
  const float r = radius[h >> 40];
  const uint64_t angle = h & 0xffffff;
  return (index & 1) != 0 ? r * sine[angle] : r * cosine[angle];
}

// Fills radius[a] = 0.02 * sqrt(-2 log((a + 1) / 2^24)), and cosine[b],
// sine[b] of 2 pi b / 2^24, each [kDummyTableSize], with the CPU generator's
// float expressions (dummy_tables.cc, compiled like the engine).
void BuildDummyTables(float* radius, float* cosine, float* sine);

}  // namespace inferd::cuda

#include <cmath>
#include <cstdint>

#include "cuda/dummy_generator.h"

namespace inferd::cuda {

void BuildDummyTables(float* radius, float* cosine, float* sine) {
  constexpr float kStddev = 0.02f;  // engine/dummy_weights.cc
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < kDummyTableSize; ++i) {
    // The CPU generator's u1 = ((h >> 40) + 1) * 2^-24 and u2 = (h & 0xffffff)
    // * 2^-24, with i standing for those 24-bit fields.
    const float u1 = static_cast<float>(static_cast<uint64_t>(i) + 1) * 0x1p-24f;
    const float u2 = static_cast<float>(static_cast<uint64_t>(i)) * 0x1p-24f;
    radius[i] = kStddev * std::sqrt(-2.0f * std::log(u1));
    const float theta = 6.28318530718f * u2;
    cosine[i] = std::cos(theta);
    sine[i] = std::sin(theta);
  }
}

}  // namespace inferd::cuda

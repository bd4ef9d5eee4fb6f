// ExpfX8 is std::exp bit for bit (the sampler's seeded draws depend on the
// exact weights): a sweep over every float bit pattern at a prime stride,
// every float around glibc's special-case thresholds, and the specials.
// (The whole 2^32 range was checked once, offline, with no difference.)
#include "engine/expf_x8.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace inferd {
namespace {

#if INFERD_EXPF_X8
// The inputs whose ExpfX8 differs from std::exp in any bit (NaN matches NaN).
std::vector<float> Mismatches(const std::vector<float>& inputs) {
  std::vector<float> bad;
  for (size_t i = 0; i + 8 <= inputs.size(); i += 8) {
    alignas(32) float out[8];
    _mm256_store_ps(out, ExpfX8(_mm256_loadu_ps(&inputs[i])));
    for (int j = 0; j < 8; ++j) {
      const float want = std::exp(inputs[i + j]);
      if (std::isnan(want) && std::isnan(out[j])) continue;
      if (std::bit_cast<uint32_t>(want) != std::bit_cast<uint32_t>(out[j])) bad.push_back(inputs[i + j]);
    }
  }
  return bad;
}

// 8 * n consecutive floats starting at `from` (upwards in bit pattern).
std::vector<float> Around(float from, int n) {
  std::vector<float> out;
  uint32_t bits = std::bit_cast<uint32_t>(from);
  for (int i = 0; i < 8 * n; ++i) out.push_back(std::bit_cast<float>(bits++));
  return out;
}

TEST(ExpfX8Test, EqualsStdExpOnAStridedSweepOfAllFloats) {
  std::vector<float> inputs;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 1009) {
    inputs.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
  }
  inputs.resize(inputs.size() / 8 * 8);
  const std::vector<float> bad = Mismatches(inputs);
  EXPECT_TRUE(bad.empty()) << bad.size() << " differ, e.g. exp(" << std::hexfloat << bad[0] << ")";
}

TEST(ExpfX8Test, EqualsStdExpAroundTheSpecialCases) {
  // Where glibc leaves its main path (|x| >= 88), overflows, may underflow
  // and underflows; and both sides of each, a few thousand floats apiece.
  for (float edge : {88.0f, -88.0f, 0x1.62e42ep6f, -0x1.9d1d9ep6f, -0x1.9fe368p6f, 0.0f, -0.0f, 1.0f, -1.0f}) {
    std::vector<float> inputs = Around(std::nextafter(edge, -std::numeric_limits<float>::infinity()), 256);
    std::vector<float> below = Around(edge, 256);
    inputs.insert(inputs.end(), below.begin(), below.end());
    const std::vector<float> bad = Mismatches(inputs);
    EXPECT_TRUE(bad.empty()) << "near " << edge << ": exp(" << std::hexfloat << bad[0] << ")";
  }
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(Mismatches({inf, -inf, nan, -nan, std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::max(), std::numeric_limits<float>::max(), -1e-30f})
                  .empty());
}
#else
TEST(ExpfX8Test, NotBuilt) { GTEST_SKIP() << "built without AVX2 and FMA: the sampler uses std::exp alone"; }
#endif

}  // namespace
}  // namespace inferd

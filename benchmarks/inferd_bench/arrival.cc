#include "benchmarks/inferd_bench/arrival.h"

#include <cmath>

namespace inferd::bench {

// Gamma(shape k, scale theta) has mean k * theta; theta = 1 / (rate * k)
// makes the mean gap 1 / rate whatever the shape.
ArrivalProcess::ArrivalProcess(double rate, double burstiness, uint64_t seed)
    : all_at_once_(std::isinf(rate)),
      rng_(seed),
      gap_(burstiness, all_at_once_ ? 1.0 : 1.0 / (rate * burstiness)) {}

double ArrivalProcess::NextGap() { return all_at_once_ ? 0.0 : gap_(rng_); }

}  // namespace inferd::bench

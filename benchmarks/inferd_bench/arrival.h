// When an open-loop run sends its requests: gaps between arrivals drawn from
// a gamma distribution with shape `burstiness` and mean 1 / rate, as vLLM's
// benchmark does. Shape 1 is a Poisson process; smaller shapes bunch
// requests into bursts, larger ones space them evenly (the gaps' coefficient
// of variation is 1 / sqrt(burstiness)).
#pragma once

#include <cstdint>
#include <random>

namespace inferd::bench {

class ArrivalProcess {
 public:
  // `rate` in requests per second; infinity sends every request at once.
  ArrivalProcess(double rate, double burstiness, uint64_t seed);

  // Seconds from the previous arrival to the next one.
  double NextGap();

 private:
  bool all_at_once_;
  std::mt19937_64 rng_;
  std::gamma_distribution<double> gap_;
};

}  // namespace inferd::bench

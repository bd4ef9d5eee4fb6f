// Time limits in tests are set for optimized builds; the sanitizer builds
// (make test-asan, make test-tsan) run the same code several times slower,
// so a limit meant to catch a quadratic blow-up is scaled by this.
#pragma once

namespace inferd::testing {

#if defined(__SANITIZE_THREAD__)
inline constexpr double kSanitizerSlowdown = 20.0;  // TSan: 5-15x, and -O1
#elif defined(__SANITIZE_ADDRESS__)
inline constexpr double kSanitizerSlowdown = 4.0;  // ASan+UBSan: 2-3x, and -O1
#else
inline constexpr double kSanitizerSlowdown = 1.0;
#endif

}  // namespace inferd::testing

// Client-controlled text in logs (request ids, model names, error messages
// that quote them): escaped, so a newline cannot forge a log line, and
// capped, so a 10 MiB field cannot make a 10 MiB line.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace inferd {

inline constexpr size_t kMaxLoggedFieldBytes = 256;

// Printable ASCII as is; '\\', control bytes and bytes >= 0x80 as C escapes;
// past `max_bytes` of input, "...(+N bytes)".
std::string LogSafe(absl::string_view text, size_t max_bytes = kMaxLoggedFieldBytes);

}  // namespace inferd

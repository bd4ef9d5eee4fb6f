#include "server/log_text.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace inferd {

std::string LogSafe(absl::string_view text, size_t max_bytes) {
  const bool cut = text.size() > max_bytes;
  // CHexEscape escapes every non-printable byte (and '\\', '"', '\''), so
  // nothing in the result can end or forge a line.
  std::string out = absl::CHexEscape(text.substr(0, max_bytes));
  if (cut) absl::StrAppend(&out, "...(+", text.size() - max_bytes, " bytes)");
  return out;
}

}  // namespace inferd

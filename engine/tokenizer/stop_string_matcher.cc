#include "engine/tokenizer/stop_string_matcher.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace inferd {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings)
    : stop_strings_(std::move(stop_strings)) {}

// Only held_ + text is ever scanned. held_ is the longest suffix of the text
// so far that is a proper prefix of some stop string, so any occurrence that
// ends in the new text starts inside held_ + text: nothing released earlier
// needs another look, and held_ is shorter than the longest stop string.
//
// The earliest occurrence in the buffer wins; at the same position the stop
// string listed first wins (only the reported index differs, the released
// text is the same). A stop string already complete in the buffer stops the
// text even if a longer stop string containing it might still complete at an
// earlier position with text not yet seen: waiting would need Flush to report
// a match, and the difference only arises when one stop string contains
// another. Empty stop strings never match (the request layer rejects them).
//
// With valid UTF-8 text and stop strings, every cut is at a character
// boundary: a match or a held prefix starts with a stop string's first byte,
// which is a lead byte.
StopStringMatcher::Result StopStringMatcher::Push(std::string_view text,
                                                  bool check) {
  Result result;
  if (stopped_) return result;

  std::string buffer = std::exchange(held_, std::string());
  buffer.append(text);
  if (!check) {
    result.released = std::move(buffer);
    return result;
  }

  size_t match_pos = std::string::npos;
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    const std::string& stop = stop_strings_[i];
    if (stop.empty()) continue;
    const size_t pos = buffer.find(stop);
    if (pos < match_pos) {  // strict: the earlier-listed string keeps a tie
      match_pos = pos;
      result.matched = static_cast<int>(i);
    }
  }
  if (result.matched >= 0) {
    buffer.resize(match_pos);
    result.released = std::move(buffer);
    stopped_ = true;
    return result;
  }

  // No stop string is complete; hold back the longest end of the buffer that
  // a stop string could still start with.
  const std::string_view view(buffer);
  size_t hold = 0;
  for (const std::string& stop : stop_strings_) {
    if (stop.empty()) continue;
    const std::string_view stop_view(stop);
    for (size_t len = std::min(stop.size() - 1, view.size()); len > hold;
         --len) {
      if (view.substr(view.size() - len) == stop_view.substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  held_.assign(view.substr(view.size() - hold));
  buffer.resize(buffer.size() - hold);
  result.released = std::move(buffer);
  return result;
}

std::string StopStringMatcher::Flush() {
  if (stopped_) return "";
  return std::exchange(held_, std::string());
}

}  // namespace inferd

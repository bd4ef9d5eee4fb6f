// Finds stop strings in generated text across token boundaries. Text is held
// back only while its end could still be the start of a stop string; a
// matched stop string and everything after it are never released.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace inferd {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  struct Result {
    std::string released;  // text the client may see now
    int matched = -1;      // index of the stop string that matched, or -1
  };

  // Adds new text (valid UTF-8). When `check` is false (min_tokens not yet
  // reached) nothing can match and the text is released at once (with what
  // was held). After a match, further calls release nothing.
  Result Push(std::string_view text, bool check = true);

  // Releases whatever is held back (at the end of a sequence that did not
  // stop on a string).
  std::string Flush();

  bool empty() const { return stop_strings_.empty(); }
  const std::string& stop_string(int i) const { return stop_strings_[i]; }

 private:
  std::vector<std::string> stop_strings_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace inferd

// tokenizer.json's `added_tokens`, found in text before pre-tokenization:
// the leftmost match, the longest on ties, with `lstrip`/`rstrip` taking the
// whitespace beside the token and `single_word` requiring word boundaries.
// Tokens with `normalized: false` are looked for in the raw text; those with
// `normalized: true`, in each normalized section between them.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/regex.h"

namespace inferd {

struct AddedToken {
  int id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class AddedTokenMatcher {
 public:
  // `contents(token)` is the text to look for (the normalized content for
  // normalized tokens). Tokens for which `include` is false are not matched.
  static absl::StatusOr<AddedTokenMatcher> Build(const std::vector<AddedToken>& tokens,
                                                 const std::function<bool(const AddedToken&)>& include,
                                                 const std::function<std::string(const AddedToken&)>& content);

  // Calls on_text(text) for text between tokens and on_token(id) for each
  // token, in order. Empty text is not reported.
  template <typename OnText, typename OnToken>
  void Split(std::string_view text, OnText&& on_text, OnToken&& on_token) const {
    if (!regex_.has_value()) {
      if (!text.empty()) on_text(text);
      return;
    }
    size_t last = 0;
    regex_->ForEachMatch(text, [&](const Regex::Match& m) {
      if (m.group <= 0 || m.end == m.begin) return;
      if (m.begin > last) on_text(text.substr(last, m.begin - last));
      on_token(group_ids_[m.group - 1]);
      last = m.end;
    });
    if (last < text.size()) on_text(text.substr(last));
  }

 private:
  std::optional<Regex> regex_;  // none when no token is matched
  std::vector<int> group_ids_;  // token id per capture group
};

}  // namespace inferd

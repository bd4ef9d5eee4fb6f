#include "engine/tokenizer/added_tokens.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace inferd {

// One alternation of capture groups, longest content first: PCRE2 takes the
// leftmost match and, at a position, the first alternative that matches,
// which is then the longest. lstrip/rstrip become \s* inside the group, so
// the whitespace is consumed with the token (Hugging Face strips it).
absl::StatusOr<AddedTokenMatcher> AddedTokenMatcher::Build(
    const std::vector<AddedToken>& tokens, const std::function<bool(const AddedToken&)>& include,
    const std::function<std::string(const AddedToken&)>& content) {
  struct Entry {
    std::string text;
    const AddedToken* token;
  };
  std::vector<Entry> entries;
  for (const AddedToken& t : tokens) {
    if (!include(t)) continue;
    std::string text = content(t);
    if (!text.empty()) entries.push_back({std::move(text), &t});
  }
  AddedTokenMatcher matcher;
  if (entries.empty()) return matcher;
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.text.size() > b.text.size(); });
  std::string pattern;
  for (const Entry& e : entries) {
    if (!pattern.empty()) pattern += '|';
    pattern += '(';
    if (e.token->single_word) pattern += "(?<!\\w)";
    if (e.token->lstrip) pattern += "\\s*";
    pattern += Regex::Quote(e.text);
    if (e.token->rstrip) pattern += "\\s*";
    if (e.token->single_word) pattern += "(?!\\w)";
    pattern += ')';
    matcher.group_ids_.push_back(e.token->id);
  }
  absl::StatusOr<Regex> regex = Regex::Compile(pattern);
  if (!regex.ok()) return absl::InvalidArgumentError(absl::StrCat("added_tokens: ", regex.status().message()));
  matcher.regex_ = *std::move(regex);
  return matcher;
}

}  // namespace inferd

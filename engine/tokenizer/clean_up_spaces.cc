#include "engine/tokenizer/clean_up_spaces.h"

#include <array>
#include <utility>

#include "absl/strings/str_replace.h"

namespace inferd {
namespace {

// transformers' PreTrainedTokenizerBase.clean_up_tokenization, in its order.
// Every pattern starts with a space; only " ' " has another.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kPasses = {{
    {" .", "."},
    {" ?", "?"},
    {" !", "!"},
    {" ,", ","},
    {" ' ", "'"},
    {" n't", "n't"},
    {" 'm", "'m"},
    {" 's", "'s"},
    {" 've", "'ve"},
    {" 're", "'re"},
}};

}  // namespace

std::string CleanUpTokenizationSpaces(std::string_view text) {
  std::string out(text);
  // One pass per pattern (not absl::StrReplaceAll's single pass): a " ' "
  // removed by pass 5 can make a match for a later pass ("x n ' t").
  for (const auto& [from, to] : kPasses) {
    if (out.find(from) == std::string::npos) continue;
    // (Debian's absl::string_view is its own type, not std::string_view.)
    out = absl::StrReplaceAll(
        out, {{absl::string_view(from.data(), from.size()), absl::string_view(to.data(), to.size())}});
  }
  return out;
}

// A cut just before a space at `c` is safe when no match of any pass can
// span it. Matches are a space followed by non-spaces, except " ' ", so only
// " '" + " ..." could span a cut before a space; and a later pass can span
// it only after pass 5 deleted the space at `c`, which needs text[c-1] to
// end a prefix of " n't", i.e. to be 'n' or '\''. Excluding text[c-1] in
// {' ', '\'', 'n'} leaves cuts that no pass crosses.
size_t CleanUpSafePrefix(std::string_view text) {
  for (size_t c = text.size(); c > 0; --c) {
    const size_t i = c - 1;
    if (text[i] != ' ' || i == 0) continue;
    const char before = text[i - 1];
    if (before != ' ' && before != '\'' && before != 'n') return i;
  }
  return 0;
}

}  // namespace inferd

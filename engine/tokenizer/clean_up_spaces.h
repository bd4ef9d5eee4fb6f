// Hugging Face's clean_up_tokenization_spaces: the spaces a word-level
// tokenizer once put before punctuation and English contractions are removed
// from decoded text (" ." -> ".", " n't" -> "n't", ...), exactly as
// transformers' clean_up_tokenization does: ten literal replace-all passes,
// in order.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace inferd {

std::string CleanUpTokenizationSpaces(std::string_view text);

// The length of the longest prefix of `text` that can be cleaned up on its
// own: for any continuation `rest`,
//   Clean(text + rest) == Clean(text[0, n)) + Clean(text[n, end) + rest).
// Streams cut there so that their concatenation equals the clean-up of the
// whole text; the rest waits for more tokens.
size_t CleanUpSafePrefix(std::string_view text);

}  // namespace inferd

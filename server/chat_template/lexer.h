// Splits template source into tokens: raw text, the delimiters of {{ }} and
// {% %} tags, and the names, literals and operators inside them. Whitespace
// control ({%- -%} {{- -}} {#- -#}, and trim_blocks / lstrip_blocks) is
// applied here, to the text tokens, as Jinja2's lexer does.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace inferd::jinja {

struct LexerOptions {
  // Hugging Face compiles chat templates with both on.
  bool trim_blocks = true;    // drop the first newline after a block tag
  bool lstrip_blocks = true;  // drop spaces and tabs before a block tag that starts its line
};

struct Token {
  enum class Type { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOperator, kEnd };
  Type type;
  std::string value;  // text, name, string contents (unescaped), number, or operator
  int line = 1;       // 1-based, of the token's first character
  int column = 1;     // 1-based, in bytes
};

// The tokens of `source`, ending with one kEnd; InvalidArgument with
// "line L, column C: ..." for an unterminated tag, comment or string, or a
// character that is not part of the language.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, const LexerOptions& options);

}  // namespace inferd::jinja

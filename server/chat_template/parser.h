// Builds the syntax tree from the lexer's tokens, by recursive descent over
// Jinja2's grammar (its operator precedence, tests and filters). Everything
// the evaluator could not run is refused here, with the line and column:
// unknown statements, filters, tests, methods and functions, and syntax
// errors. So a template that parses renders without surprises of that kind.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "server/chat_template/ast.h"
#include "server/chat_template/lexer.h"

namespace inferd::jinja {

// InvalidArgument "line L, column C: ..." on the first error.
absl::StatusOr<Body> Parse(const std::vector<Token>& tokens);

}  // namespace inferd::jinja

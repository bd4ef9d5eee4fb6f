// Runs a parsed template: statements write to the output, expressions are
// evaluated with Python's semantics (value.h) and the built-ins
// (builtins.h). Errors are thrown as RenderError with the position of the
// node that failed; Template::Render catches them.
#pragma once

#include <string>

#include "server/chat_template/ast.h"
#include "server/chat_template/value.h"

namespace inferd::jinja {

// Renders `body` with `context` as its variables; throws RenderError.
std::string Evaluate(const Body& body, const Dict& context);

}  // namespace inferd::jinja

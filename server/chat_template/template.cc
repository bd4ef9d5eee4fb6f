#include "server/chat_template/template.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "server/chat_template/builtins.h"
#include "server/chat_template/evaluator.h"
#include "server/chat_template/parser.h"

namespace inferd::jinja {

absl::StatusOr<Template> Template::Parse(std::string_view source, const LexerOptions& options) {
  absl::StatusOr<std::vector<Token>> tokens = Tokenize(source, options);
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<Body> body = jinja::Parse(*tokens);
  if (!body.ok()) return body.status();
  return Template(std::make_shared<const Body>(*std::move(body)));
}

absl::StatusOr<std::string> Template::Render(const Dict& context) const {
  try {
    return Evaluate(*body_, context);
  } catch (const RenderError& e) {
    return absl::InvalidArgumentError(absl::StrCat("line ", e.line, ", column ", e.column, ": ",
                                                   e.raised ? "raise_exception: " : "", e.message));
  } catch (const std::exception& e) {
    // A bug of ours (RenderError is the only error the evaluator means to
    // throw): the request fails, the server does not.
    return absl::InternalError(absl::StrCat("chat template evaluator: ", e.what()));
  }
}

}  // namespace inferd::jinja

// A Jinja template, parsed once and rendered many times: the language
// subset that Hugging Face chat templates use (see docs/API.md, "Chat
// templates"), with Jinja2's semantics as transformers configures it
// (trim_blocks and lstrip_blocks on, loop controls, raise_exception,
// tojson as json.dumps). This folder knows nothing of gRPC or the engine.
//
//   absl::StatusOr<Template> t = Template::Parse(source);
//   absl::StatusOr<std::string> text = t->Render(context);
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/chat_template/ast.h"
#include "server/chat_template/lexer.h"
#include "server/chat_template/value.h"

namespace inferd::jinja {

class Template {
 public:
  // InvalidArgument "line L, column C: ..." for a syntax error or anything
  // outside the supported subset (unknown statement, filter, test, method or
  // function): such a template never gets as far as rendering.
  static absl::StatusOr<Template> Parse(std::string_view source, const LexerOptions& options = {});

  // Renders with `context` as the template's variables. InvalidArgument for
  // an error the template meets with these values (a type error, an
  // undefined value used as an object, raise_exception(), a limit below),
  // "line L, column C: ..."; raise_exception's message is passed on as is
  // after "raise_exception: ".
  absl::StatusOr<std::string> Render(const Dict& context) const;

  const Body& body() const { return *body_; }

  // Limits that keep a hostile or broken template from taking the server
  // down; real chat templates stay far below them.
  static constexpr size_t kMaxOutputBytes = 16 << 20;
  static constexpr int64_t kMaxSteps = 1'000'000;  // statements and loop iterations
  static constexpr int kMaxCallDepth = 100;          // nested macro calls

 private:
  explicit Template(std::shared_ptr<const Body> body) : body_(std::move(body)) {}
  std::shared_ptr<const Body> body_;
};

}  // namespace inferd::jinja

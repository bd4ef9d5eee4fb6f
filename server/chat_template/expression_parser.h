// Expressions, by recursive descent over Jinja2's grammar, level by level:
// conditional, or, and, not, comparisons (chained, in, not in), + -, ~,
// * / // %, **, unary, primary with postfix (.attr [key] [a:b:c] (args)),
// then filters and tests. Unknown filters, tests and methods fail here;
// called names are collected for the statement parser to check once every
// macro is known.
#pragma once

#include <string>
#include <vector>

#include "server/chat_template/ast.h"
#include "server/chat_template/token_stream.h"

namespace inferd::jinja {

class ExpressionParser : public TokenStream {
 public:
  using TokenStream::TokenStream;

  ExprPtr ParseTuple(bool with_condition = true);
  ExprPtr ParseExpression();
  ExprPtr ParseFilter(ExprPtr operand);

  // A plain name that was called, where.
  struct CalledName {
    std::string name;
    int line;
    int column;
  };
  const std::vector<CalledName>& called_names() const { return called_names_; }

 private:
  ExprPtr Binary(std::string op, const Token& at, ExprPtr left, ExprPtr right);
  ExprPtr ParseOr();
  ExprPtr ParseAnd();
  ExprPtr ParseNot();
  ExprPtr ParseCompare();
  ExprPtr ParseMath1();
  ExprPtr ParseConcat();
  ExprPtr ParseMath2();
  ExprPtr ParsePow();
  ExprPtr ParseUnary(bool with_filter);
  ExprPtr ParsePrimary();
  ExprPtr Literal(const Token& at, Value value);
  ExprPtr ParsePostfix(ExprPtr node);
  ExprPtr ParseSubscript(ExprPtr object);
  void ParseCallArgs(Expr* call);
  ExprPtr ParseCall(ExprPtr callee);
  ExprPtr ParseFilterExpression(ExprPtr node);

  std::vector<CalledName> called_names_;
};

}  // namespace inferd::jinja

// The parser's cursor over the lexer's tokens: look-ahead, expectations
// that fail with the token's line and column, and a nesting limit.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/chat_template/lexer.h"

namespace inferd::jinja {

// Thrown inside the parser only; Parse() turns it into a Status.
struct SyntaxError {
  std::string message;
  int line;
  int column;
};

class TokenStream {
 public:
  explicit TokenStream(const std::vector<Token>& tokens) : tokens_(tokens) {}

  // Nesting beyond this is refused rather than overflowing the stack (the
  // parser and the evaluator recurse once per level).
  static constexpr int kMaxNesting = 200;

  class NestingGuard {
   public:
    NestingGuard(TokenStream* stream, const Token& at) : stream_(stream) {
      if (++stream_->nesting_ > kMaxNesting) {
        stream_->Fail(at, absl::StrCat("nested deeper than ", kMaxNesting, " levels"));
      }
    }
    ~NestingGuard() { --stream_->nesting_; }

   private:
    TokenStream* stream_;
  };

  [[noreturn]] static void Fail(const Token& at, std::string message) {
    throw SyntaxError{std::move(message), at.line, at.column};
  }

  const Token& Peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    return Peek(ahead).type == Token::Type::kOperator && Peek(ahead).value == op;
  }
  bool IsName(absl::string_view name, size_t ahead = 0) const {
    return Peek(ahead).type == Token::Type::kName && Peek(ahead).value == name;
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case Token::Type::kEnd: return "end of template";
      case Token::Type::kBlockEnd: return "'%}'";
      case Token::Type::kVarEnd: return "'}}'";
      case Token::Type::kText: return "text";
      case Token::Type::kString: return "a string";
      default: return absl::StrCat("'", t.value, "'");
    }
  }
  void ExpectOp(absl::string_view op) {
    if (!IsOp(op)) Fail(Peek(), absl::StrCat("expected '", op, "', got ", Describe(Peek())));
    Next();
  }
  const Token& ExpectType(Token::Type type, absl::string_view what) {
    if (Peek().type != type) Fail(Peek(), absl::StrCat("expected ", what, ", got ", Describe(Peek())));
    return Next();
  }
  std::string ExpectName(absl::string_view what) { return ExpectType(Token::Type::kName, what).value; }
  void ExpectBlockEnd() { ExpectType(Token::Type::kBlockEnd, "'%}'"); }

 private:
  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
};

}  // namespace inferd::jinja

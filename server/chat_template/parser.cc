#include "server/chat_template/parser.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/chat_template/builtins.h"
#include "server/chat_template/expression_parser.h"

namespace inferd::jinja {
namespace {

using Type = Token::Type;

// Statements; expressions come from the ExpressionParser it extends (the
// two share one token cursor).
class Parser : public ExpressionParser {
 public:
  using ExpressionParser::ExpressionParser;

  Body ParseTemplate() {
    Body body = ParseBody({}, nullptr);
    for (const CalledName& called : called_names()) {
      if (!IsGlobalFunction(called.name) && !macros_.count(called.name) && called.name != "caller") {
        throw SyntaxError{absl::StrCat("unknown function '", called.name, "'"), called.line, called.column};
      }
    }
    return body;
  }

 private:
  static std::unique_ptr<Node> MakeNode(Node::Kind kind, const Token& at) {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->line = at.line;
    n->column = at.column;
    return n;
  }


  // Nodes until a block tag named in `ends` ({% ends... consumed up to the
  // name, whose value goes to *end) or the end of the template.
  // `opening`: the statement's keyword, for the error if it is never closed.
  Body ParseBody(const std::set<absl::string_view>& ends, std::string* end, const Token* opening = nullptr) {
    Body body;
    while (true) {
      const Token& t = Peek();
      switch (t.type) {
        case Type::kEnd:
          if (!ends.empty()) {
            Fail(opening != nullptr ? *opening : t,
                 absl::StrCat("this block is never closed (expected {% ", *ends.rbegin(), " %})"));
          }
          return body;
        case Type::kText: {
          auto node = MakeNode(Node::Kind::kText, t);
          node->text = Next().value;
          body.push_back(std::move(node));
          break;
        }
        case Type::kVarBegin: {
          auto node = MakeNode(Node::Kind::kOutput, Next());
          node->expr = ParseTuple();
          ExpectType(Type::kVarEnd, "'}}'");
          body.push_back(std::move(node));
          break;
        }
        case Type::kBlockBegin: {
          const Token& name = Peek(1);
          if (name.type == Type::kName && ends.count(name.value)) {
            Next();
            *end = Next().value;
            return body;
          }
          ParseStatement(&body);
          break;
        }
        default:
          Fail(t, absl::StrCat("unexpected ", Describe(t)));
      }
    }
  }

  void ParseStatement(Body* body) {
    NestingGuard guard(this, Peek());
    Next();  // {%
    const Token& keyword = Peek();
    if (keyword.type != Type::kName) Fail(keyword, absl::StrCat("expected a statement name, got ", Describe(keyword)));
    const std::string name = Next().value;
    if (name == "if") return body->push_back(ParseIf(keyword));
    if (name == "for") return body->push_back(ParseFor(keyword));
    if (name == "set") return body->push_back(ParseSet(keyword));
    if (name == "macro") return body->push_back(ParseMacro(keyword));
    if (name == "call") return body->push_back(ParseCallBlock(keyword));
    if (name == "filter") return body->push_back(ParseFilterBlock(keyword));
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) Fail(keyword, absl::StrCat("'", name, "' outside a for loop"));
      ExpectBlockEnd();
      return body->push_back(MakeNode(name == "break" ? Node::Kind::kBreak : Node::Kind::kContinue, keyword));
    }
    if (name == "generation") {
      // Hugging Face's {% generation %} marks assistant text for masks; it
      // renders its body unchanged.
      ExpectBlockEnd();
      std::string end;
      for (auto& node : ParseBody({"endgeneration"}, &end, &keyword)) body->push_back(std::move(node));
      ExpectBlockEnd();
      return;
    }
    Fail(keyword, absl::StrCat("unknown statement '", name, "'"));
  }

  std::unique_ptr<Node> ParseIf(const Token& at) {
    auto node = MakeNode(Node::Kind::kIf, at);
    std::string end = "elif";
    while (end == "elif") {
      ExprPtr test = ParseExpression();
      ExpectBlockEnd();
      Body branch = ParseBody({"elif", "else", "endif"}, &end, &at);
      node->branches.emplace_back(std::move(test), std::move(branch));
    }
    if (end == "else") {
      ExpectBlockEnd();
      node->else_body = ParseBody({"endif"}, &end, &at);
    }
    ExpectBlockEnd();
    return node;
  }

  std::vector<std::string> ParseTargets() {
    std::vector<std::string> targets;
    const bool parenthesized = IsOp("(");
    if (parenthesized) Next();
    targets.push_back(ExpectName("a variable name"));
    while (IsOp(",")) {
      Next();
      targets.push_back(ExpectName("a variable name"));
    }
    if (parenthesized) ExpectOp(")");
    return targets;
  }

  std::unique_ptr<Node> ParseFor(const Token& at) {
    auto node = MakeNode(Node::Kind::kFor, at);
    node->targets = ParseTargets();
    if (!IsName("in")) Fail(Peek(), absl::StrCat("expected 'in', got ", Describe(Peek())));
    Next();
    node->expr = ParseTuple(/*with_condition=*/false);
    if (IsName("if")) {
      Next();
      node->condition = ParseExpression();
    }
    if (IsName("recursive")) Fail(Peek(), "recursive loops are not supported");
    ExpectBlockEnd();
    ++loop_depth_;
    std::string end;
    node->body = ParseBody({"else", "endfor"}, &end, &at);
    --loop_depth_;
    if (end == "else") {
      ExpectBlockEnd();
      node->else_body = ParseBody({"endfor"}, &end, &at);
    }
    ExpectBlockEnd();
    return node;
  }

  std::unique_ptr<Node> ParseSet(const Token& at) {
    auto node = MakeNode(Node::Kind::kSet, at);
    if (Peek().type == Type::kName && IsOp(".", 1)) {
      node->targets.push_back(Next().value);
      Next();
      node->attribute = ExpectName("an attribute name");
    } else {
      node->targets = ParseTargets();
    }
    if (IsOp("=")) {
      Next();
      node->expr = ParseTuple();
      ExpectBlockEnd();
      return node;
    }
    if (node->targets.size() != 1 || !node->attribute.empty()) Fail(Peek(), "expected '='");
    node->kind = Node::Kind::kSetBlock;
    ExpectBlockEnd();
    std::string end;
    node->body = ParseBody({"endset"}, &end, &at);
    ExpectBlockEnd();
    return node;
  }

  std::vector<std::pair<std::string, ExprPtr>> ParseParams() {
    std::vector<std::pair<std::string, ExprPtr>> params;
    ExpectOp("(");
    while (!IsOp(")")) {
      std::string name = ExpectName("a parameter name");
      ExprPtr fallback;
      if (IsOp("=")) {
        Next();
        fallback = ParseExpression();
      }
      params.emplace_back(std::move(name), std::move(fallback));
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp(")");
    return params;
  }

  std::unique_ptr<Node> ParseMacro(const Token& at) {
    auto node = MakeNode(Node::Kind::kMacro, at);
    node->text = ExpectName("a macro name");
    macros_.insert(node->text);
    node->params = ParseParams();
    ExpectBlockEnd();
    const int saved = loop_depth_;
    loop_depth_ = 0;  // a loop around the definition is not the macro's
    std::string end;
    node->body = ParseBody({"endmacro"}, &end, &at);
    loop_depth_ = saved;
    if (Peek().type == Type::kName) Next();  // {% endmacro name %}
    ExpectBlockEnd();
    return node;
  }

  std::unique_ptr<Node> ParseCallBlock(const Token& at) {
    auto node = MakeNode(Node::Kind::kCallBlock, at);
    if (IsOp("(")) node->params = ParseParams();
    node->expr = ParseExpression();
    if (node->expr->kind != Expr::Kind::kCall) Fail(at, "{% call %} needs a macro call");
    ExpectBlockEnd();
    std::string end;
    node->body = ParseBody({"endcall"}, &end, &at);
    ExpectBlockEnd();
    return node;
  }

  std::unique_ptr<Node> ParseFilterBlock(const Token& at) {
    auto node = MakeNode(Node::Kind::kFilterBlock, at);
    ExprPtr chain;
    do {
      if (chain != nullptr) Next();  // |
      chain = ParseFilter(std::move(chain));
    } while (IsOp("|"));
    node->expr = std::move(chain);
    ExpectBlockEnd();
    std::string end;
    node->body = ParseBody({"endfilter"}, &end, &at);
    ExpectBlockEnd();
    return node;
  }

  int loop_depth_ = 0;  // break and continue need a loop around them
  std::set<std::string> macros_;
};

}  // namespace

absl::StatusOr<Body> Parse(const std::vector<Token>& tokens) {
  try {
    return Parser(tokens).ParseTemplate();
  } catch (const SyntaxError& e) {
    return absl::InvalidArgumentError(absl::StrCat("line ", e.line, ", column ", e.column, ": ", e.message));
  }
}

}  // namespace inferd::jinja

#include "server/chat_template/parser.h"

#include <set>
#include "absl/strings/string_view.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/chat_template/builtins.h"

namespace inferd::jinja {
namespace {

using Type = Token::Type;

// Thrown inside the parser only; Parse() turns it into a Status.
struct SyntaxError {
  std::string message;
  int line;
  int column;
};

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  Body ParseTemplate() {
    Body body = ParseBody({}, nullptr);
    for (const CalledName& called : called_names_) {
      if (!IsGlobalFunction(called.name) && !macros_.count(called.name) && called.name != "caller") {
        throw SyntaxError{absl::StrCat("unknown function '", called.name, "'"), called.line, called.column};
      }
    }
    return body;
  }

 private:
  [[noreturn]] void Fail(const Token& at, std::string message) const {
    throw SyntaxError{std::move(message), at.line, at.column};
  }

  const Token& Peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    return Peek(ahead).type == Type::kOperator && Peek(ahead).value == op;
  }
  bool IsName(absl::string_view name, size_t ahead = 0) const {
    return Peek(ahead).type == Type::kName && Peek(ahead).value == name;
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case Type::kEnd: return "end of template";
      case Type::kBlockEnd: return "'%}'";
      case Type::kVarEnd: return "'}}'";
      case Type::kText: return "text";
      case Type::kString: return "a string";
      default: return absl::StrCat("'", t.value, "'");
    }
  }
  void ExpectOp(absl::string_view op) {
    if (!IsOp(op)) Fail(Peek(), absl::StrCat("expected '", op, "', got ", Describe(Peek())));
    Next();
  }
  const Token& ExpectType(Type type, absl::string_view what) {
    if (Peek().type != type) Fail(Peek(), absl::StrCat("expected ", what, ", got ", Describe(Peek())));
    return Next();
  }
  std::string ExpectName(absl::string_view what) { return ExpectType(Type::kName, what).value; }
  void ExpectBlockEnd() { ExpectType(Type::kBlockEnd, "'%}'"); }

  static ExprPtr MakeExpr(Expr::Kind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }
  static std::unique_ptr<Node> MakeNode(Node::Kind kind, const Token& at) {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->line = at.line;
    n->column = at.column;
    return n;
  }

  // ---- statements ----

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

  // ---- expressions (Jinja2's parser, level by level) ----

  ExprPtr ParseTuple(bool with_condition = true) {
    const Token& at = Peek();
    ExprPtr first = with_condition ? ParseExpression() : ParseOr();
    if (!IsOp(",")) return first;
    auto tuple = MakeExpr(Expr::Kind::kTuple, at);
    tuple->children.push_back(std::move(first));
    while (IsOp(",")) {
      Next();
      if (Peek().type == Type::kBlockEnd || Peek().type == Type::kVarEnd || IsOp(")") || IsOp("=")) break;
      tuple->children.push_back(with_condition ? ParseExpression() : ParseOr());
    }
    return tuple;
  }

  ExprPtr ParseExpression() {
    ExprPtr value = ParseOr();
    while (IsName("if")) {
      auto cond = MakeExpr(Expr::Kind::kCondition, Next());
      cond->children.push_back(ParseOr());
      cond->children.push_back(std::move(value));
      if (IsName("else")) {
        Next();
        cond->children.push_back(ParseExpression());
      } else {
        cond->children.push_back(nullptr);
      }
      value = std::move(cond);
    }
    return value;
  }

  ExprPtr Binary(std::string op, const Token& at, ExprPtr left, ExprPtr right) {
    auto e = MakeExpr(Expr::Kind::kBinary, at);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      const Token& at = Next();
      left = Binary("or", at, std::move(left), ParseAnd());
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      const Token& at = Next();
      left = Binary("and", at, std::move(left), ParseNot());
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      auto e = MakeExpr(Expr::Kind::kUnary, Next());
      e->name = "not";
      e->children.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const Token& at = Peek();
    ExprPtr first = ParseMath1();
    ExprPtr compare;
    while (true) {
      std::string op;
      if (Peek().type == Type::kOperator &&
          (Peek().value == "==" || Peek().value == "!=" || Peek().value == "<" || Peek().value == "<=" ||
           Peek().value == ">" || Peek().value == ">=")) {
        op = Next().value;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      if (compare == nullptr) {
        compare = MakeExpr(Expr::Kind::kCompare, at);
        compare->children.push_back(std::move(first));
      }
      compare->ops.push_back(op);
      compare->children.push_back(ParseMath1());
    }
    return compare != nullptr ? std::move(compare) : std::move(first);
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& at = Next();
      left = Binary(at.value, at, std::move(left), ParseConcat());
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (IsOp("~")) {
      const Token& at = Next();
      left = Binary("~", at, std::move(left), ParseMath2());
    }
    return left;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& at = Next();
      left = Binary(at.value, at, std::move(left), ParsePow());
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const Token& at = Next();
      left = Binary("**", at, std::move(left), ParseUnary(true));
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = MakeExpr(Expr::Kind::kUnary, Peek());
      node->name = Next().value;
      node->children.push_back(ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpression(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Peek();
    switch (t.type) {
      case Type::kName: {
        Next();
        if (t.value == "true" || t.value == "True") return Literal(t, Value(true));
        if (t.value == "false" || t.value == "False") return Literal(t, Value(false));
        if (t.value == "none" || t.value == "None") return Literal(t, Value::MakeNone());
        auto e = MakeExpr(Expr::Kind::kName, t);
        e->name = t.value;
        return e;
      }
      case Type::kString: {
        std::string value;
        while (Peek().type == Type::kString) value += Next().value;  // 'a' 'b' is 'ab'
        return Literal(t, Value(std::move(value)));
      }
      case Type::kInt: {
        int64_t i;
        if (!absl::SimpleAtoi(t.value, &i)) Fail(t, absl::StrCat("integer ", t.value, " is too large"));
        Next();
        return Literal(t, Value(i));
      }
      case Type::kFloat: {
        double d;
        if (!absl::SimpleAtod(t.value, &d)) Fail(t, absl::StrCat("bad number ", t.value));
        Next();
        return Literal(t, Value(d));
      }
      case Type::kOperator:
        if (t.value == "(") {
          Next();
          if (IsOp(")")) {
            Next();
            return MakeExpr(Expr::Kind::kTuple, t);
          }
          ExprPtr inner = ParseTuple();  // (a,) is a one-item tuple
          ExpectOp(")");
          return inner;
        }
        if (t.value == "[") {
          Next();
          auto list = MakeExpr(Expr::Kind::kList, t);
          while (!IsOp("]")) {
            list->children.push_back(ParseExpression());
            if (!IsOp(",")) break;
            Next();
          }
          ExpectOp("]");
          return list;
        }
        if (t.value == "{") {
          Next();
          auto dict = MakeExpr(Expr::Kind::kDict, t);
          while (!IsOp("}")) {
            dict->children.push_back(ParseExpression());
            ExpectOp(":");
            dict->children.push_back(ParseExpression());
            if (!IsOp(",")) break;
            Next();
          }
          ExpectOp("}");
          return dict;
        }
        break;
      default:
        break;
    }
    Fail(t, absl::StrCat("unexpected ", Describe(t)));
  }

  ExprPtr Literal(const Token& at, Value value) {
    auto e = MakeExpr(Expr::Kind::kLiteral, at);
    e->literal = std::move(value);
    return e;
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".")) {
        const Token& at = Next();
        const Token& attr = Peek();
        if (attr.type == Type::kInt) {
          auto item = MakeExpr(Expr::Kind::kGetItem, at);
          item->children.push_back(std::move(node));
          item->children.push_back(ParsePrimary());
          node = std::move(item);
          continue;
        }
        auto get = MakeExpr(Expr::Kind::kGetAttr, at);
        get->name = ExpectName("an attribute name");
        get->children.push_back(std::move(node));
        if (IsOp("(") && !IsMethod(get->name)) Fail(attr, absl::StrCat("unknown method '", get->name, "'"));
        node = std::move(get);
      } else if (IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr object) {
    const Token& at = Next();  // [
    ExprPtr bounds[3];
    int colons = 0;
    for (int part = 0; part < 3; ++part) {
      if (!IsOp(":") && !IsOp("]")) bounds[part] = ParseExpression();
      if (!IsOp(":") || part == 2) break;
      Next();
      ++colons;
    }
    ExpectOp("]");
    if (colons == 0) {
      if (bounds[0] == nullptr) Fail(at, "empty subscript");
      auto item = MakeExpr(Expr::Kind::kGetItem, at);
      item->children.push_back(std::move(object));
      item->children.push_back(std::move(bounds[0]));
      return item;
    }
    auto slice = MakeExpr(Expr::Kind::kSlice, at);
    slice->children.push_back(std::move(object));
    for (ExprPtr& bound : bounds) slice->children.push_back(std::move(bound));
    return slice;
  }

  void ParseCallArgs(Expr* call) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (IsOp("*") || IsOp("**")) Fail(Peek(), "argument unpacking (* and **) is not supported");
      if (Peek().type == Type::kName && IsOp("=", 1)) {
        std::string name = Next().value;
        Next();
        call->keywords.emplace_back(std::move(name), ParseExpression());
      } else {
        if (!call->keywords.empty()) Fail(Peek(), "a positional argument follows a keyword argument");
        call->children.push_back(ParseExpression());
      }
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    auto call = MakeExpr(Expr::Kind::kCall, Peek());
    call->line = callee->line;  // errors point at what was called
    call->column = callee->column;
    if (callee->kind == Expr::Kind::kName) {
      called_names_.push_back(CalledName{callee->name, callee->line, callee->column});
    }
    call->children.push_back(std::move(callee));
    ParseCallArgs(call.get());
    return call;
  }

  ExprPtr ParseFilter(ExprPtr operand) {
    const Token& name = Peek();
    auto filter = MakeExpr(Expr::Kind::kFilter, name);
    filter->name = ExpectName("a filter name");
    if (!IsFilter(filter->name)) Fail(name, absl::StrCat("unknown filter '", filter->name, "'"));
    filter->children.push_back(std::move(operand));
    if (IsOp("(")) ParseCallArgs(filter.get());
    return filter;
  }

  ExprPtr ParseFilterExpression(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        Next();
        node = ParseFilter(std::move(node));
      } else if (IsName("is")) {
        Next();
        auto test = MakeExpr(Expr::Kind::kTest, Peek());
        if (IsName("not")) {
          Next();
          test->negated = true;
        }
        const Token& name = Peek();
        // `is none`, `is true`, `is false` name tests, not literals.
        test->name = ExpectName("a test name");
        if (!IsTest(test->name)) Fail(name, absl::StrCat("unknown test '", test->name, "'"));
        test->children.push_back(std::move(node));
        const Token& next = Peek();
        if (IsOp("(")) {
          ParseCallArgs(test.get());
        } else if ((next.type == Type::kName && next.value != "else" && next.value != "or" && next.value != "and") ||
                   next.type == Type::kString || next.type == Type::kInt || next.type == Type::kFloat || IsOp("[") ||
                   IsOp("{")) {
          if (IsName("is")) Fail(next, "tests cannot be chained with 'is'");
          test->children.push_back(ParsePostfix(ParsePrimary()));
        }
        node = std::move(test);
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int loop_depth_ = 0;
  std::set<std::string> macros_;
  // Calls of plain names, checked once every macro is known.
  struct CalledName {
    std::string name;
    int line;
    int column;
  };
  std::vector<CalledName> called_names_;
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

#include "server/chat_template/expression_parser.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/chat_template/builtins.h"

namespace inferd::jinja {
namespace {

using Type = Token::Type;

ExprPtr MakeExpr(Expr::Kind kind, const Token& at) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = at.line;
  e->column = at.column;
  return e;
}

}  // namespace

ExprPtr ExpressionParser::ParseTuple(bool with_condition) {
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

ExprPtr ExpressionParser::ParseExpression() {
  NestingGuard guard(this, Peek());
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

ExprPtr ExpressionParser::Binary(std::string op, const Token& at, ExprPtr left, ExprPtr right) {
  auto e = MakeExpr(Expr::Kind::kBinary, at);
  e->name = std::move(op);
  e->children.push_back(std::move(left));
  e->children.push_back(std::move(right));
  return e;
}

ExprPtr ExpressionParser::ParseOr() {
  ExprPtr left = ParseAnd();
  while (IsName("or")) {
    const Token& at = Next();
    left = Binary("or", at, std::move(left), ParseAnd());
  }
  return left;
}

ExprPtr ExpressionParser::ParseAnd() {
  ExprPtr left = ParseNot();
  while (IsName("and")) {
    const Token& at = Next();
    left = Binary("and", at, std::move(left), ParseNot());
  }
  return left;
}

ExprPtr ExpressionParser::ParseNot() {
  NestingGuard guard(this, Peek());
  if (IsName("not")) {
    auto e = MakeExpr(Expr::Kind::kUnary, Next());
    e->name = "not";
    e->children.push_back(ParseNot());
    return e;
  }
  return ParseCompare();
}

ExprPtr ExpressionParser::ParseCompare() {
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

ExprPtr ExpressionParser::ParseMath1() {
  ExprPtr left = ParseConcat();
  while (IsOp("+") || IsOp("-")) {
    const Token& at = Next();
    left = Binary(at.value, at, std::move(left), ParseConcat());
  }
  return left;
}

ExprPtr ExpressionParser::ParseConcat() {
  ExprPtr left = ParseMath2();
  while (IsOp("~")) {
    const Token& at = Next();
    left = Binary("~", at, std::move(left), ParseMath2());
  }
  return left;
}

ExprPtr ExpressionParser::ParseMath2() {
  ExprPtr left = ParsePow();
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    const Token& at = Next();
    left = Binary(at.value, at, std::move(left), ParsePow());
  }
  return left;
}

ExprPtr ExpressionParser::ParsePow() {
  ExprPtr left = ParseUnary(true);
  while (IsOp("**")) {
    const Token& at = Next();
    left = Binary("**", at, std::move(left), ParseUnary(true));
  }
  return left;
}

ExprPtr ExpressionParser::ParseUnary(bool with_filter) {
  NestingGuard guard(this, Peek());
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

ExprPtr ExpressionParser::ParsePrimary() {
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

ExprPtr ExpressionParser::Literal(const Token& at, Value value) {
  auto e = MakeExpr(Expr::Kind::kLiteral, at);
  e->literal = std::move(value);
  return e;
}

ExprPtr ExpressionParser::ParsePostfix(ExprPtr node) {
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

ExprPtr ExpressionParser::ParseSubscript(ExprPtr object) {
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

void ExpressionParser::ParseCallArgs(Expr* call) {
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

ExprPtr ExpressionParser::ParseCall(ExprPtr callee) {
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

ExprPtr ExpressionParser::ParseFilter(ExprPtr operand) {
  const Token& name = Peek();
  auto filter = MakeExpr(Expr::Kind::kFilter, name);
  filter->name = ExpectName("a filter name");
  if (!IsFilter(filter->name)) Fail(name, absl::StrCat("unknown filter '", filter->name, "'"));
  filter->children.push_back(std::move(operand));
  if (IsOp("(")) ParseCallArgs(filter.get());
  return filter;
}

ExprPtr ExpressionParser::ParseFilterExpression(ExprPtr node) {
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

}  // namespace inferd::jinja

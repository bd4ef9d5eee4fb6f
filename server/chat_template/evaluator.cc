#include "server/chat_template/evaluator.h"

#include <cmath>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "server/chat_template/builtins.h"
#include "server/chat_template/template.h"

namespace inferd::jinja {
namespace {

struct BreakSignal {};
struct ContinueSignal {};

// Variables of one scope: the template, a loop iteration, a macro call.
struct Frame {
  absl::flat_hash_map<std::string, Value> variables;
  std::shared_ptr<Frame> parent;
};

// A short text for the expression an error is about ("message.content").
std::string Describe(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kName:
      return e.name;
    case Expr::Kind::kGetAttr:
      return Describe(*e.children[0]) + "." + e.name;
    case Expr::Kind::kGetItem:
      return Describe(*e.children[0]) + "[" +
             (e.children[1]->kind == Expr::Kind::kLiteral ? e.children[1]->literal.Repr() : "...") + "]";
    default:
      return "value";
  }
}

[[noreturn]] void TypeError(absl::string_view op, const Value& a, const Value& b) {
  ThrowRenderError(absl::StrCat("unsupported operand types for ", op, ": '", a.TypeName(), "' and '", b.TypeName(), "'"));
}

Value Arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value(a.Str() + b.Str());
  if (a.is_undefined() || b.is_undefined()) TypeError(op, a, b);
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list()) {
      List out = a.as_list();
      out.insert(out.end(), b.as_list().begin(), b.as_list().end());
      return Value(std::move(out));
    }
  }
  if (op == "*" && (a.is_string() || a.is_list() || b.is_string() || b.is_list())) {
    const Value& seq = a.is_string() || a.is_list() ? a : b;
    const Value& times = a.is_string() || a.is_list() ? b : a;
    if (!times.is_int() && !times.is_bool()) TypeError(op, a, b);
    const int64_t n = std::max<int64_t>(0, times.as_int());
    const size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size();
    if (unit * n > Template::kMaxOutputBytes) ThrowRenderError("repetition result is too large");
    if (seq.is_string()) {
      std::string out;
      for (int64_t i = 0; i < n; ++i) out += seq.as_string();
      return Value(std::move(out));
    }
    List out;
    for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
    return Value(std::move(out));
  }
  if (!a.is_number() || !b.is_number()) TypeError(op, a, b);
  const bool floats = a.is_float() || b.is_float();
  if (op == "/") {
    if (b.as_double() == 0) ThrowRenderError("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == "**") {
    if (!floats && b.as_int() >= 0) {
      int64_t result = 1;
      for (int64_t i = 0; i < b.as_int(); ++i) {
        if (__builtin_mul_overflow(result, a.as_int(), &result)) ThrowRenderError("integer overflow in **");
      }
      return Value(result);
    }
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  if (floats) {
    const double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (y == 0) ThrowRenderError("division by zero");
    if (op == "//") return Value(std::floor(x / y));
    double r = std::fmod(x, y);  // %: the sign of the divisor, as Python
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return Value(r);
  }
  const int64_t x = a.as_int(), y = b.as_int();
  int64_t r;
  if (op == "+" && !__builtin_add_overflow(x, y, &r)) return Value(r);
  if (op == "-" && !__builtin_sub_overflow(x, y, &r)) return Value(r);
  if (op == "*" && !__builtin_mul_overflow(x, y, &r)) return Value(r);
  if (op == "+" || op == "-" || op == "*") ThrowRenderError("integer overflow");
  if (y == 0) ThrowRenderError("division by zero");
  int64_t q = x / y;
  int64_t m = x % y;
  if (m != 0 && ((m < 0) != (y < 0))) {
    --q;
    m += y;
  }
  return Value(op == "//" ? q : m);
}

class Evaluator {
 public:
  explicit Evaluator(const Dict& context) : root_(std::make_shared<Frame>()) {
    for (absl::string_view name : {"range", "dict", "raise_exception", "strftime_now"}) {
      root_->variables[name] = GlobalFunction(name);
    }
    auto make_namespace = std::make_shared<Callable>();
    make_namespace->name = "namespace";
    make_namespace->call = [this, builtin = GlobalFunction("namespace")](const CallArgs& args) {
      Value ns = builtin.as_callable().call(args);
      namespaces_.push_back(ns);
      return ns;
    };
    root_->variables["namespace"] = Value(std::shared_ptr<const Callable>(std::move(make_namespace)));
    for (const auto& [k, v] : context.entries()) root_->variables[k] = v;
  }

  // A namespace is the one mutable value, so the only one that can end up
  // holding itself (ns.self = ns); emptying them all frees such cycles.
  ~Evaluator() {
    for (const Value& ns : namespaces_) ns.as_namespace().attributes = Dict();
  }

  std::string Run(const Body& body) {
    std::string out;
    Exec(body, root_, &out);
    return out;
  }

 private:
  void Step() {
    if (++steps_ > Template::kMaxSteps) {
      ThrowRenderError(absl::StrCat("the template ran more than ", Template::kMaxSteps, " steps"));
    }
  }

  static void Write(absl::string_view text, std::string* out) {
    if (out->size() + text.size() > Template::kMaxOutputBytes) {
      ThrowRenderError(absl::StrCat("the output is larger than ", Template::kMaxOutputBytes, " bytes"));
    }
    out->append(text.data(), text.size());
  }

  static Value Lookup(const std::shared_ptr<Frame>& frame, const std::string& name) {
    for (const Frame* f = frame.get(); f != nullptr; f = f->parent.get()) {
      auto it = f->variables.find(name);
      if (it != f->variables.end()) return it->second;
    }
    return Value();
  }

  void Exec(const Body& body, const std::shared_ptr<Frame>& frame, std::string* out) {
    for (const auto& node : body) {
      try {
        ExecNode(*node, frame, out);
      } catch (RenderError& e) {
        if (e.line == 0) {
          e.line = node->line;
          e.column = node->column;
        }
        throw;
      }
    }
  }

  void ExecNode(const Node& node, const std::shared_ptr<Frame>& frame, std::string* out) {
    Step();
    switch (node.kind) {
      case Node::Kind::kText:
        return Write(node.text, out);
      case Node::Kind::kOutput:
        return Write(Eval(*node.expr, frame).Str(), out);
      case Node::Kind::kIf:
        for (const auto& [test, branch] : node.branches) {
          if (Eval(*test, frame).Truthy()) return Exec(branch, frame, out);
        }
        return Exec(node.else_body, frame, out);
      case Node::Kind::kFor:
        return ExecFor(node, frame, out);
      case Node::Kind::kSet:
        return ExecSet(node, Eval(*node.expr, frame), frame);
      case Node::Kind::kSetBlock: {
        std::string captured;
        Exec(node.body, frame, &captured);
        frame->variables[node.targets[0]] = Value(std::move(captured));
        return;
      }
      case Node::Kind::kMacro:
        frame->variables[node.text] = MakeMacro(node, frame);
        return;
      case Node::Kind::kCallBlock: {
        pending_caller_ = MakeMacro(node, frame);
        const Value result = Eval(*node.expr, frame);
        pending_caller_ = Value();
        return Write(result.Str(), out);
      }
      case Node::Kind::kFilterBlock: {
        std::string captured;
        Exec(node.body, frame, &captured);
        return Write(ApplyFilterChain(*node.expr, Value(std::move(captured)), frame).Str(), out);
      }
      case Node::Kind::kBreak:
        throw BreakSignal{};
      case Node::Kind::kContinue:
        throw ContinueSignal{};
    }
  }

  static void Bind(const std::vector<std::string>& targets, const Value& value, Frame* frame) {
    if (targets.size() == 1) {
      frame->variables[targets[0]] = value;
      return;
    }
    if (!value.is_list() || value.as_list().size() != targets.size()) {
      ThrowRenderError(absl::StrCat("cannot unpack a ", value.TypeName(), " into ", targets.size(), " names"));
    }
    for (size_t i = 0; i < targets.size(); ++i) frame->variables[targets[i]] = value.as_list()[i];
  }

  void ExecSet(const Node& node, const Value& value, const std::shared_ptr<Frame>& frame) {
    if (node.attribute.empty()) return Bind(node.targets, value, frame.get());
    const Value target = Lookup(frame, node.targets[0]);
    if (!target.is_namespace()) {
      ThrowRenderError(absl::StrCat("cannot set attribute '", node.attribute, "' of '", node.targets[0],
                                    "': only a namespace() takes attributes"));
    }
    target.as_namespace().attributes.Set(node.attribute, value);
  }

  void ExecFor(const Node& node, const std::shared_ptr<Frame>& frame, std::string* out) {
    const Value iterable = Eval(*node.expr, frame);
    List items;
    if (iterable.is_list() || iterable.is_string() || iterable.is_dict() || iterable.is_undefined()) {
      items = ApplyFilter("list", iterable, {}).as_list();
    } else {
      ThrowRenderError(absl::StrCat("'", iterable.TypeName(), "' object is not iterable"));
    }
    if (node.condition != nullptr) {
      List kept;
      for (const Value& item : items) {
        auto scope = std::make_shared<Frame>(Frame{{}, frame});
        Bind(node.targets, item, scope.get());
        if (Eval(*node.condition, scope).Truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return Exec(node.else_body, frame, out);
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      Step();
      auto scope = std::make_shared<Frame>(Frame{{}, frame});
      scope->variables["loop"] = LoopObject(items, i);
      Bind(node.targets, items[i], scope.get());
      try {
        Exec(node.body, scope, out);
      } catch (const BreakSignal&) {
        break;
      } catch (const ContinueSignal&) {
        continue;
      }
    }
  }

  static Value LoopObject(const List& items, int64_t i) {
    const int64_t n = static_cast<int64_t>(items.size());
    Dict loop;
    loop.Set("index", Value(i + 1));
    loop.Set("index0", Value(i));
    loop.Set("revindex", Value(n - i));
    loop.Set("revindex0", Value(n - i - 1));
    loop.Set("first", Value(i == 0));
    loop.Set("last", Value(i == n - 1));
    loop.Set("length", Value(n));
    loop.Set("depth", Value(1));
    loop.Set("depth0", Value(0));
    loop.Set("previtem", i > 0 ? items[i - 1] : Value());
    loop.Set("nextitem", i + 1 < n ? items[i + 1] : Value());
    auto cycle = std::make_shared<Callable>();
    cycle->name = "loop.cycle";
    cycle->call = [i](const CallArgs& args) {
      if (args.positional.empty()) ThrowRenderError("loop.cycle() needs at least one value");
      return args.positional[i % args.positional.size()];
    };
    loop.Set("cycle", Value(std::shared_ptr<const Callable>(std::move(cycle))));
    return Value(std::move(loop));
  }

  // A macro (or a call block's caller): renders its body in a frame of its
  // own whose parent is where it was defined. It holds that frame weakly:
  // the frame holds the macro, and a strong reference would be a cycle that
  // outlives the render. A macro called after its frame ended (stored in a
  // namespace from inside a loop) sees the template's top-level variables.
  Value MakeMacro(const Node& node, const std::shared_ptr<Frame>& defined_in) {
    auto macro = std::make_shared<Callable>();
    macro->name = node.kind == Node::Kind::kMacro ? node.text : "caller";
    macro->call = [this, &node, weak_defined_in = std::weak_ptr<Frame>(defined_in)](const CallArgs& args) {
      if (++depth_ > Template::kMaxCallDepth) {
        ThrowRenderError(absl::StrCat("macros nested deeper than ", Template::kMaxCallDepth, " calls"));
      }
      std::shared_ptr<Frame> defined_in = weak_defined_in.lock();
      auto scope = std::make_shared<Frame>(Frame{{}, defined_in != nullptr ? defined_in : root_});
      if (node.kind == Node::Kind::kMacro && !pending_caller_.is_undefined()) {
        scope->variables["caller"] = pending_caller_;
        pending_caller_ = Value();
      }
      if (args.positional.size() > node.params.size()) {
        ThrowRenderError(absl::StrCat("macro '", node.text, "' takes at most ", node.params.size(), " arguments"));
      }
      for (const auto& [name, value] : args.keyword) {
        bool known = false;
        for (const auto& param : node.params) known = known || param.first == name;
        if (!known) ThrowRenderError(absl::StrCat("macro '", node.text, "' has no argument '", name, "'"));
      }
      for (size_t i = 0; i < node.params.size(); ++i) {
        const Value* given = args.Get(i, node.params[i].first);
        scope->variables[node.params[i].first] =
            given != nullptr ? *given : node.params[i].second != nullptr ? Eval(*node.params[i].second, scope) : Value();
      }
      std::string out;
      Exec(node.body, scope, &out);
      --depth_;
      return Value(std::move(out));
    };
    return Value(std::shared_ptr<const Callable>(std::move(macro)));
  }

  CallArgs EvalArgs(const Expr& e, size_t first, const std::shared_ptr<Frame>& frame) {
    CallArgs args;
    for (size_t i = first; i < e.children.size(); ++i) args.positional.push_back(Eval(*e.children[i], frame));
    for (const auto& [name, value] : e.keywords) args.keyword.emplace_back(name, Eval(*value, frame));
    return args;
  }

  // A filter expression whose innermost operand is `operand` ({% filter %}).
  Value ApplyFilterChain(const Expr& e, Value operand, const std::shared_ptr<Frame>& frame) {
    if (e.children[0] != nullptr) operand = ApplyFilterChain(*e.children[0], std::move(operand), frame);
    return ApplyFilter(e.name, operand, EvalArgs(e, 1, frame));
  }

  Value Eval(const Expr& e, const std::shared_ptr<Frame>& frame) {
    try {
      return EvalExpr(e, frame);
    } catch (RenderError& error) {
      if (error.line == 0) {
        error.line = e.line;
        error.column = e.column;
      }
      throw;
    }
  }

  Value EvalExpr(const Expr& e, const std::shared_ptr<Frame>& frame) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName:
        return Lookup(frame, e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        List items;
        for (const auto& child : e.children) items.push_back(Eval(*child, frame));
        return e.kind == Expr::Kind::kTuple ? Value::Tuple(std::move(items)) : Value(std::move(items));
      }
      case Expr::Kind::kDict: {
        Dict dict;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          const Value key = Eval(*e.children[i], frame);
          if (!key.is_string()) ThrowRenderError(absl::StrCat("dict keys must be strings, got ", key.TypeName()));
          dict.Set(key.as_string(), Eval(*e.children[i + 1], frame));
        }
        return Value(std::move(dict));
      }
      case Expr::Kind::kGetAttr:
        return GetAttribute(Eval(*e.children[0], frame), e.name, Describe(*e.children[0]));
      case Expr::Kind::kGetItem:
        return GetItem(Eval(*e.children[0], frame), Eval(*e.children[1], frame), Describe(*e.children[0]));
      case Expr::Kind::kSlice: {
        const Value object = Eval(*e.children[0], frame);
        Value bounds[3];
        for (int i = 0; i < 3; ++i) {
          if (e.children[i + 1] != nullptr) bounds[i] = Eval(*e.children[i + 1], frame);
        }
        return Slice(object, bounds[0], bounds[1], bounds[2]);
      }
      case Expr::Kind::kCall: {
        const Value callee = Eval(*e.children[0], frame);
        if (!callee.is_callable()) {
          ThrowRenderError(absl::StrCat("'", Describe(*e.children[0]), "' is not callable (its type is ",
                                        callee.TypeName(), ")"));
        }
        return callee.as_callable().call(EvalArgs(e, 1, frame));
      }
      case Expr::Kind::kFilter:
        return ApplyFilter(e.name, Eval(*e.children[0], frame), EvalArgs(e, 1, frame));
      case Expr::Kind::kTest: {
        const bool passed = ApplyTest(e.name, Eval(*e.children[0], frame), EvalArgs(e, 1, frame));
        return Value(passed != e.negated);
      }
      case Expr::Kind::kUnary: {
        const Value operand = Eval(*e.children[0], frame);
        if (e.name == "not") return Value(!operand.Truthy());
        if (!operand.is_number()) ThrowRenderError(absl::StrCat("bad operand type for unary ", e.name, ": '", operand.TypeName(), "'"));
        if (e.name == "+") return operand.is_bool() ? Value(operand.as_int()) : operand;
        return operand.is_float() ? Value(-operand.as_double()) : Value(-operand.as_int());
      }
      case Expr::Kind::kBinary: {
        const Value left = Eval(*e.children[0], frame);
        if (e.name == "and") return left.Truthy() ? Eval(*e.children[1], frame) : left;
        if (e.name == "or") return left.Truthy() ? left : Eval(*e.children[1], frame);
        const Value right = Eval(*e.children[1], frame);
        if (e.name != "~" && (left.is_undefined() || right.is_undefined())) {
          const Expr& culprit = left.is_undefined() ? *e.children[0] : *e.children[1];
          ThrowRenderError(absl::StrCat("'", Describe(culprit), "' is undefined"));
        }
        return Arithmetic(e.name, left, right);
      }
      case Expr::Kind::kCompare: {
        Value left = Eval(*e.children[0], frame);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = Eval(*e.children[i + 1], frame);
          if (!CompareOnce(e.ops[i], left, right)) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::Kind::kCondition:
        if (Eval(*e.children[0], frame).Truthy()) return Eval(*e.children[1], frame);
        return e.children[2] != nullptr ? Eval(*e.children[2], frame) : Value();
    }
    return Value();
  }

  static bool CompareOnce(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return Equals(a, b);
    if (op == "!=") return !Equals(a, b);
    if (op == "in" || op == "not in") {
      CallArgs container;
      container.positional.push_back(b);
      return ApplyTest("in", a, container) == (op == "in");
    }
    std::optional<int> c = Compare(a, b);
    if (!c) ThrowRenderError(absl::StrCat("'", op, "' not supported between '", a.TypeName(), "' and '", b.TypeName(), "'"));
    if (op == "<") return *c < 0;
    if (op == "<=") return *c <= 0;
    if (op == ">") return *c > 0;
    return *c >= 0;
  }

  std::shared_ptr<Frame> root_;
  std::vector<Value> namespaces_;  // every namespace() of this render
  Value pending_caller_;  // the caller of the {% call %} block being entered
  int64_t steps_ = 0;
  int depth_ = 0;
};

}  // namespace

std::string Evaluate(const Body& body, const Dict& context) { return Evaluator(context).Run(body); }

}  // namespace inferd::jinja

// Tests, str and dict methods, attribute and item access, and the global
// functions; the filters are in filters.cc.
#include "server/chat_template/builtins.h"

#include <ctime>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/chat_template/text.h"

namespace inferd::jinja {
namespace {

// Jinja's sandbox caps range() at this many items.
constexpr int64_t kMaxRange = 100000;

using TestFn = bool (*)(const Value&, const CallArgs&);

const Value& Arg(const CallArgs& args, absl::string_view test) {
  if (args.positional.empty()) ThrowRenderError(absl::StrCat("test '", test, "' needs an argument"));
  return args.positional[0];
}

int CompareOrThrow(const Value& a, const Value& b) {
  std::optional<int> c = Compare(a, b);
  if (!c) ThrowRenderError(absl::StrCat("'<' not supported between a ", a.TypeName(), " and a ", b.TypeName()));
  return *c;
}

bool Contains(const Value& container, const Value& item);

const std::map<std::string, TestFn, std::less<>>& Tests() {
  static const auto* const tests = new std::map<std::string, TestFn, std::less<>>{
      {"boolean", [](const Value& v, const CallArgs&) { return v.is_bool(); }},
      {"callable", [](const Value& v, const CallArgs&) { return v.is_callable(); }},
      {"defined", [](const Value& v, const CallArgs&) { return !v.is_undefined(); }},
      {"divisibleby",
       [](const Value& v, const CallArgs& a) {
         const int64_t n = RequireInt(Arg(a, "divisibleby"), "divisibleby");
         return n != 0 && RequireInt(v, "divisibleby") % n == 0;
       }},
      {"eq", [](const Value& v, const CallArgs& a) { return Equals(v, Arg(a, "eq")); }},
      {"even", [](const Value& v, const CallArgs&) { return RequireInt(v, "even") % 2 == 0; }},
      {"false", [](const Value& v, const CallArgs&) { return v.is_bool() && !v.as_bool(); }},
      {"float", [](const Value& v, const CallArgs&) { return v.is_float(); }},
      {"ge", [](const Value& v, const CallArgs& a) { return CompareOrThrow(v, Arg(a, "ge")) >= 0; }},
      {"gt", [](const Value& v, const CallArgs& a) { return CompareOrThrow(v, Arg(a, "gt")) > 0; }},
      {"in", [](const Value& v, const CallArgs& a) { return Contains(Arg(a, "in"), v); }},
      {"integer", [](const Value& v, const CallArgs&) { return v.is_int(); }},
      {"iterable",
       [](const Value& v, const CallArgs&) { return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined(); }},
      {"le", [](const Value& v, const CallArgs& a) { return CompareOrThrow(v, Arg(a, "le")) <= 0; }},
      {"lower", [](const Value& v, const CallArgs&) { return v.is_string() && ToLower(v.as_string()) == v.as_string(); }},
      {"lt", [](const Value& v, const CallArgs& a) { return CompareOrThrow(v, Arg(a, "lt")) < 0; }},
      {"mapping", [](const Value& v, const CallArgs&) { return v.is_dict(); }},
      {"ne", [](const Value& v, const CallArgs& a) { return !Equals(v, Arg(a, "ne")); }},
      {"none", [](const Value& v, const CallArgs&) { return v.is_none(); }},
      {"number", [](const Value& v, const CallArgs&) { return v.is_number(); }},
      {"odd", [](const Value& v, const CallArgs&) { return RequireInt(v, "odd") % 2 != 0; }},
      {"sequence",
       [](const Value& v, const CallArgs&) { return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined(); }},
      {"string", [](const Value& v, const CallArgs&) { return v.is_string(); }},
      {"true", [](const Value& v, const CallArgs&) { return v.is_bool() && v.as_bool(); }},
      {"undefined", [](const Value& v, const CallArgs&) { return v.is_undefined(); }},
      {"upper", [](const Value& v, const CallArgs&) { return v.is_string() && ToUpper(v.as_string()) == v.as_string(); }},
  };
  return *tests;
}

absl::string_view CanonicalTest(absl::string_view name) {
  static const auto* const aliases = new std::map<std::string, std::string, std::less<>>{
      {"==", "eq"}, {"equalto", "eq"}, {"!=", "ne"}, {"<", "lt"}, {"lessthan", "lt"}, {"<=", "le"},
      {">", "gt"}, {"greaterthan", "gt"}, {">=", "ge"}};
  auto it = aliases->find(name);
  return it == aliases->end() ? name : absl::string_view(it->second);
}

bool Contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) ThrowRenderError(absl::StrCat("'in <string>' requires a string, not a ", item.TypeName()));
    return absl::StrContains(container.as_string(), item.as_string());
  }
  if (container.is_list()) {
    for (const Value& v : container.as_list()) {
      if (Equals(v, item)) return true;
    }
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.as_dict().Find(item.as_string()) != nullptr;
  if (container.is_undefined()) return false;
  ThrowRenderError(absl::StrCat("argument of type '", container.TypeName(), "' is not iterable"));
}

const std::string& StringArg(const CallArgs& args, size_t index, absl::string_view name, absl::string_view method) {
  const Value* v = args.Get(index, name);
  if (v == nullptr || !v->is_string()) ThrowRenderError(absl::StrCat(method, "() needs a string argument '", name, "'"));
  return v->as_string();
}

const std::string* OptionalStringArg(const CallArgs& args, size_t index, absl::string_view name) {
  const Value* v = args.Get(index, name);
  if (v == nullptr || v->is_none()) return nullptr;
  if (!v->is_string()) ThrowRenderError(absl::StrCat("argument '", name, "' must be a string or None"));
  return &v->as_string();
}

// startswith/endswith take a string or a tuple (list) of strings.
bool AffixMatch(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) ThrowRenderError("startswith/endswith need a string or a tuple of strings");
    return prefix ? absl::StartsWith(s, a.as_string()) : absl::EndsWith(s, a.as_string());
  };
  if (affix.is_list()) {
    for (const Value& a : affix.as_list()) {
      if (one(a)) return true;
    }
    return false;
  }
  return one(affix);
}

List Strings(const std::vector<std::string>& parts) {
  List out;
  for (const std::string& p : parts) out.push_back(Value(p));
  return out;
}

Value CallStringMethod(const std::string& s, absl::string_view name, const CallArgs& args) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    return Value(Strip(s, OptionalStringArg(args, 0, "chars"), name != "rstrip", name != "lstrip"));
  }
  if (name == "startswith" || name == "endswith") {
    const Value* affix = args.Get(0, name == "startswith" ? "prefix" : "suffix");
    if (affix == nullptr) ThrowRenderError(absl::StrCat(name, "() needs an argument"));
    return Value(AffixMatch(s, *affix, name == "startswith"));
  }
  if (name == "split" || name == "rsplit") {
    const std::string* sep = OptionalStringArg(args, 0, "sep");
    if (sep != nullptr && sep->empty()) ThrowRenderError("empty separator");
    const Value* maxsplit = args.Get(1, "maxsplit");
    const long limit = maxsplit == nullptr ? -1 : static_cast<long>(RequireInt(*maxsplit, "maxsplit"));
    return Value(Strings(name == "split" ? Split(s, sep, limit) : RSplit(s, sep, limit)));
  }
  if (name == "replace") {
    const Value* count = args.Get(2, "count");
    return Value(Replace(s, StringArg(args, 0, "old", name), StringArg(args, 1, "new", name),
                         count == nullptr ? -1 : static_cast<long>(RequireInt(*count, "count"))));
  }
  if (name == "upper") return Value(ToUpper(s));
  if (name == "lower") return Value(ToLower(s));
  if (name == "title") return Value(ToTitle(s));
  if (name == "capitalize") return Value(Capitalize(s));
  if (name == "find") {
    const size_t at = s.find(StringArg(args, 0, "sub", name));
    if (at == std::string::npos) return Value(-1);
    return Value(static_cast<int64_t>(DecodeUtf8(std::string_view(s).substr(0, at)).size()));
  }
  if (name == "count") {
    const std::string& sub = StringArg(args, 0, "sub", name);
    if (sub.empty()) return Value(static_cast<int64_t>(DecodeUtf8(s).size() + 1));
    int64_t n = 0;
    for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
    return Value(n);
  }
  if (name == "join") {
    const Value* items = args.Get(0, "iterable");
    if (items == nullptr || !items->is_list()) ThrowRenderError("join() needs a list");
    std::string out;
    for (size_t i = 0; i < items->as_list().size(); ++i) {
      const Value& item = items->as_list()[i];
      if (!item.is_string()) ThrowRenderError(absl::StrCat("join(): item ", i, " is a ", item.TypeName(), ", not a str"));
      if (i > 0) out += s;
      out += item.as_string();
    }
    return Value(std::move(out));
  }
  ThrowRenderError(absl::StrCat("'str' object has no method '", name, "'"));
}

bool IsStringMethod(absl::string_view name) {
  static constexpr absl::string_view kNames[] = {"strip", "lstrip", "rstrip", "startswith", "endswith", "split",
                                                "rsplit", "replace", "upper", "lower", "title", "capitalize",
                                                "find", "count", "join"};
  for (absl::string_view n : kNames) {
    if (n == name) return true;
  }
  return false;
}

bool IsDictMethod(absl::string_view name) {
  return name == "get" || name == "items" || name == "keys" || name == "values";
}

Value CallDictMethod(const Dict& dict, absl::string_view name, const CallArgs& args) {
  if (name == "get") {
    const Value* key = args.Get(0, "key");
    if (key == nullptr) ThrowRenderError("get() needs a key");
    const Value* found = key->is_string() ? dict.Find(key->as_string()) : nullptr;
    if (found != nullptr) return *found;
    const Value* fallback = args.Get(1, "default");
    return fallback != nullptr ? *fallback : Value::MakeNone();
  }
  List out;
  for (const auto& [k, v] : dict.entries()) {
    out.push_back(name == "keys" ? Value(k) : name == "values" ? v : Value::Tuple(List{Value(k), v}));
  }
  return Value(std::move(out));
}

Value Bind(const Value& receiver, std::string name) {
  auto callable = std::make_shared<Callable>();
  callable->name = name;
  callable->call = [receiver, name](const CallArgs& args) {
    return receiver.is_string() ? CallStringMethod(receiver.as_string(), name, args)
                                : CallDictMethod(receiver.as_dict(), name, args);
  };
  return Value(std::shared_ptr<const Callable>(std::move(callable)));
}

Value Function(std::string name, std::function<Value(const CallArgs&)> call) {
  return Value(std::shared_ptr<const Callable>(std::make_shared<Callable>(Callable{std::move(name), std::move(call)})));
}

Value Range(const CallArgs& args) {
  if (args.positional.empty() || args.positional.size() > 3) ThrowRenderError("range() takes 1 to 3 arguments");
  int64_t start = 0, stop, step = 1;
  if (args.positional.size() == 1) {
    stop = RequireInt(args.positional[0], "range");
  } else {
    start = RequireInt(args.positional[0], "range");
    stop = RequireInt(args.positional[1], "range");
    if (args.positional.size() == 3) step = RequireInt(args.positional[2], "range");
  }
  if (step == 0) ThrowRenderError("range() step must not be zero");
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange) {
      ThrowRenderError(absl::StrCat("range() is longer than ", kMaxRange, " items"));
    }
    out.push_back(Value(i));
  }
  return Value(std::move(out));
}

Value MakeNamespace(const CallArgs& args) {
  auto ns = std::make_shared<Namespace>();
  for (const Value& source : args.positional) {
    if (!source.is_dict()) ThrowRenderError("namespace() takes a dict and keyword arguments");
    for (const auto& [k, v] : source.as_dict().entries()) ns->attributes.Set(k, v);
  }
  for (const auto& [k, v] : args.keyword) ns->attributes.Set(k, v);
  return Value(std::move(ns));
}

Value StrftimeNow(const CallArgs& args) {
  if (args.positional.empty() || !args.positional[0].is_string()) ThrowRenderError("strftime_now() needs a format");
  const std::time_t now = std::time(nullptr);
  std::tm local;
  localtime_r(&now, &local);
  char buf[256];
  const size_t n = std::strftime(buf, sizeof(buf), args.positional[0].as_string().c_str(), &local);
  return Value(std::string(buf, n));
}

}  // namespace

void ThrowRenderError(std::string message) { throw RenderError{std::move(message)}; }

int64_t RequireInt(const Value& value, absl::string_view what) {
  if (value.is_int() || value.is_bool()) return value.as_int();
  ThrowRenderError(absl::StrCat(what, ": an integer is required, got ", value.TypeName()));
}

bool IsTest(absl::string_view name) { return Tests().count(CanonicalTest(name)) > 0; }

bool ApplyTest(absl::string_view name, const Value& operand, const CallArgs& args) {
  auto it = Tests().find(CanonicalTest(name));
  if (it == Tests().end()) ThrowRenderError(absl::StrCat("unknown test '", name, "'"));
  return it->second(operand, args);
}

bool IsMethod(absl::string_view name) { return IsStringMethod(name) || IsDictMethod(name) || name == "cycle"; }

Value GetAttribute(const Value& object, absl::string_view name, absl::string_view what) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      ThrowRenderError(absl::StrCat("'", what, "' is undefined (reading its attribute '", name, "')"));
    case Value::Kind::kString:
      return IsStringMethod(name) ? Bind(object, std::string(name)) : Value();
    case Value::Kind::kDict: {
      if (IsDictMethod(name)) return Bind(object, std::string(name));
      const Value* found = object.as_dict().Find(name);
      return found != nullptr ? *found : Value();
    }
    case Value::Kind::kNamespace: {
      const Value* found = object.as_namespace().attributes.Find(name);
      return found != nullptr ? *found : Value();
    }
    default:
      return Value();
  }
}

Value GetItem(const Value& object, const Value& key, absl::string_view what) {
  if (object.is_undefined()) ThrowRenderError(absl::StrCat("'", what, "' is undefined (reading an item)"));
  if ((object.is_list() || object.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t index = key.as_int();
    if (object.is_list()) {
      const int64_t size = static_cast<int64_t>(object.as_list().size());
      if (index < 0) index += size;
      return index >= 0 && index < size ? object.as_list()[index] : Value();
    }
    const std::u32string s = DecodeUtf8(object.as_string());
    const int64_t size = static_cast<int64_t>(s.size());
    if (index < 0) index += size;
    return index >= 0 && index < size ? Value(EncodeUtf8(s.substr(index, 1))) : Value();
  }
  if (object.is_dict() && key.is_string()) {
    const Value* found = object.as_dict().Find(key.as_string());
    if (found != nullptr) return *found;
  }
  return key.is_string() ? GetAttribute(object, key.as_string(), what) : Value();
}

Value Slice(const Value& object, const Value& start_value, const Value& stop_value, const Value& step_value) {
  if (!object.is_list() && !object.is_string()) {
    ThrowRenderError(absl::StrCat("a ", object.TypeName(), " cannot be sliced"));
  }
  const std::u32string text = object.is_string() ? DecodeUtf8(object.as_string()) : std::u32string();
  const int64_t size = object.is_list() ? static_cast<int64_t>(object.as_list().size()) : static_cast<int64_t>(text.size());
  auto bound = [](const Value& v, absl::string_view what) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    return RequireInt(v, what);
  };
  const int64_t step = bound(step_value, "slice step").value_or(1);
  if (step == 0) ThrowRenderError("slice step cannot be zero");
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t i = *v < 0 ? *v + size : *v;
    if (step > 0) return std::clamp<int64_t>(i, 0, size);
    return std::clamp<int64_t>(i, -1, size - 1);
  };
  const int64_t start = clamp(bound(start_value, "slice start"), step > 0 ? 0 : size - 1);
  const int64_t stop = clamp(bound(stop_value, "slice stop"), step > 0 ? size : -1);
  List items;
  std::u32string chars;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (object.is_list()) {
      items.push_back(object.as_list()[i]);
    } else {
      chars.push_back(text[i]);
    }
  }
  return object.is_list() ? Value(std::move(items)) : Value(EncodeUtf8(chars));
}

bool IsGlobalFunction(absl::string_view name) {
  return name == "namespace" || name == "range" || name == "dict" || name == "raise_exception" ||
         name == "strftime_now";
}

Value GlobalFunction(absl::string_view name) {
  if (name == "namespace") return Function("namespace", MakeNamespace);
  if (name == "range") return Function("range", Range);
  if (name == "strftime_now") return Function("strftime_now", StrftimeNow);
  if (name == "dict") {
    return Function("dict", [](const CallArgs& args) {
      Dict dict;
      for (const Value& source : args.positional) {
        if (!source.is_dict()) ThrowRenderError("dict() takes a dict and keyword arguments");
        for (const auto& [k, v] : source.as_dict().entries()) dict.Set(k, v);
      }
      for (const auto& [k, v] : args.keyword) dict.Set(k, v);
      return Value(std::move(dict));
    });
  }
  if (name == "raise_exception") {
    return Function("raise_exception", [](const CallArgs& args) -> Value {
      throw RenderError{args.positional.empty() ? std::string() : args.positional[0].Str(), 0, 0, /*raised=*/true};
    });
  }
  return Value();
}

}  // namespace inferd::jinja

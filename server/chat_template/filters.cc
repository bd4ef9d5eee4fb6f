// The filters (x | name(args)) with the arguments and results of Jinja2's
// built-ins; tojson is Hugging Face's (json.dumps, ensure_ascii=False).
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/chat_template/builtins.h"
#include "server/chat_template/text.h"

namespace inferd::jinja {
namespace {

using FilterFn = std::function<Value(const Value&, const CallArgs&)>;

bool BoolArg(const CallArgs& args, size_t index, absl::string_view name, bool fallback) {
  const Value* v = args.Get(index, name);
  return v == nullptr ? fallback : v->Truthy();
}

const std::string* StringArg(const CallArgs& args, size_t index, absl::string_view name) {
  const Value* v = args.Get(index, name);
  if (v == nullptr || v->is_none() || v->is_undefined()) return nullptr;
  if (!v->is_string()) ThrowRenderError(absl::StrCat("argument '", name, "' must be a string, got ", v->TypeName()));
  return &v->as_string();
}

// The items of anything Jinja iterates: list items, str characters, dict keys.
List Items(const Value& value, absl::string_view filter) {
  if (value.is_list()) return value.as_list();
  if (value.is_undefined()) return {};
  if (value.is_string()) {
    List out;
    for (char32_t c : DecodeUtf8(value.as_string())) out.push_back(Value(EncodeUtf8(std::u32string(1, c))));
    return out;
  }
  if (value.is_dict()) {
    List out;
    for (const auto& [k, v] : value.as_dict().entries()) out.push_back(Value(k));
    return out;
  }
  ThrowRenderError(absl::StrCat("filter '", filter, "': a ", value.TypeName(), " is not iterable"));
}

// `attribute` may be dotted ("function.name") or an index, as Jinja allows.
Value Attribute(const Value& item, const std::string& attribute) {
  Value current = item;
  size_t start = 0;
  while (true) {
    const size_t dot = attribute.find('.', start);
    const std::string part = attribute.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    int64_t index;
    current = absl::SimpleAtoi(part, &index) && current.is_list() ? GetItem(current, Value(index), part)
                                                                   : GetItem(current, Value(part), part);
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

Value Length(const Value& v, const CallArgs&) {
  if (v.is_string()) return Value(static_cast<int64_t>(DecodeUtf8(v.as_string()).size()));
  if (v.is_list()) return Value(static_cast<int64_t>(v.as_list().size()));
  if (v.is_dict()) return Value(static_cast<int64_t>(v.as_dict().size()));
  if (v.is_undefined()) return Value(0);
  ThrowRenderError(absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
}

// Sorting key comparison: strings case-insensitively unless asked.
int CompareForSort(const Value& a, const Value& b, bool case_sensitive) {
  std::optional<int> c;
  if (!case_sensitive && a.is_string() && b.is_string()) {
    c = Compare(Value(ToLower(a.as_string())), Value(ToLower(b.as_string())));
  } else {
    c = Compare(a, b);
  }
  if (!c) ThrowRenderError(absl::StrCat("cannot compare ", a.TypeName(), " with ", b.TypeName()));
  return *c;
}

Value Sort(const Value& v, const CallArgs& args) {
  const bool reverse = BoolArg(args, 0, "reverse", false);
  const bool case_sensitive = BoolArg(args, 1, "case_sensitive", false);
  const std::string* attribute = StringArg(args, 2, "attribute");
  List items = Items(v, "sort");
  auto key = [&](const Value& item) { return attribute == nullptr ? item : Attribute(item, *attribute); };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    const int c = CompareForSort(key(a), key(b), case_sensitive);
    return reverse ? c > 0 : c < 0;
  });
  return Value(std::move(items));
}

Value MinMax(const Value& v, const CallArgs& args, bool max) {
  const bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
  const std::string* attribute = StringArg(args, 1, "attribute");
  const List items = Items(v, max ? "max" : "min");
  if (items.empty()) return Value();
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    const Value a = attribute == nullptr ? items[i] : Attribute(items[i], *attribute);
    const Value b = attribute == nullptr ? items[best] : Attribute(items[best], *attribute);
    const int c = CompareForSort(a, b, case_sensitive);
    if (max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}

// select/reject(test, args...) and selectattr/rejectattr(attribute, test, args...).
Value Select(const Value& v, const CallArgs& args, bool keep, bool by_attribute) {
  const size_t first = by_attribute ? 1 : 0;
  std::string attribute;
  if (by_attribute) {
    const std::string* a = StringArg(args, 0, "attribute");
    if (a == nullptr) ThrowRenderError("selectattr/rejectattr need an attribute name");
    attribute = *a;
  }
  std::string test;
  CallArgs test_args;
  if (args.positional.size() > first) {
    if (!args.positional[first].is_string()) ThrowRenderError("the test name must be a string");
    test = args.positional[first].as_string();
    if (!IsTest(test)) ThrowRenderError(absl::StrCat("unknown test '", test, "'"));
    test_args.positional.assign(args.positional.begin() + first + 1, args.positional.end());
  }
  List out;
  for (const Value& item : Items(v, "select")) {
    const Value subject = by_attribute ? Attribute(item, attribute) : item;
    const bool passed = test.empty() ? subject.Truthy() : ApplyTest(test, subject, test_args);
    if (passed == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

Value Map(const Value& v, const CallArgs& args) {
  List out;
  if (const std::string* attribute = StringArg(args, 99, "attribute")) {
    const Value* fallback = args.Get(99, "default");
    for (const Value& item : Items(v, "map")) {
      Value mapped = Attribute(item, *attribute);
      out.push_back(mapped.is_undefined() && fallback != nullptr ? *fallback : mapped);
    }
    return Value(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) {
    ThrowRenderError("map needs a filter name or attribute=");
  }
  const std::string& filter = args.positional[0].as_string();
  if (!IsFilter(filter)) ThrowRenderError(absl::StrCat("unknown filter '", filter, "'"));
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : Items(v, "map")) out.push_back(ApplyFilter(filter, item, rest));
  return Value(std::move(out));
}

Value ToJsonFilter(const Value& v, const CallArgs& args) {
  JsonOptions options;
  if (const Value* indent = args.Get(99, "indent"); indent != nullptr && !indent->is_none()) {
    options.indent = static_cast<int>(RequireInt(*indent, "tojson indent"));
  }
  options.ensure_ascii = BoolArg(args, 99, "ensure_ascii", false);
  options.sort_keys = BoolArg(args, 99, "sort_keys", false);
  if (const Value* separators = args.Get(99, "separators"); separators != nullptr && !separators->is_none()) {
    if (!separators->is_list() || separators->as_list().size() != 2 || !separators->as_list()[0].is_string() ||
        !separators->as_list()[1].is_string()) {
      ThrowRenderError("tojson separators must be a pair of strings");
    }
    options.item_separator = separators->as_list()[0].as_string();
    options.key_separator = separators->as_list()[1].as_string();
  }
  std::string error;
  std::optional<std::string> json = ToJson(v, options, &error);
  if (!json) ThrowRenderError(error);
  return Value(*std::move(json));
}

Value Indent(const Value& v, const CallArgs& args) {
  std::string indention = "    ";
  if (const Value* width = args.Get(0, "width")) {
    indention = width->is_string() ? width->as_string() : std::string(RequireInt(*width, "indent width"), ' ');
  }
  const bool first = BoolArg(args, 1, "first", false);
  const bool blank = BoolArg(args, 2, "blank", false);
  std::vector<std::string> lines;
  const std::string text = v.Str() + "\n";
  for (size_t start = 0; start < text.size();) {  // splitlines() on "\n"
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  std::string out = lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    out += "\n";
    if (blank || !lines[i].empty()) out += indention;
    out += lines[i];
  }
  return Value(first ? indention + out : out);
}

Value Round(const Value& v, const CallArgs& args) {
  const int64_t precision = args.Get(0, "precision") ? RequireInt(*args.Get(0, "precision"), "precision") : 0;
  const std::string* method = StringArg(args, 1, "method");
  if (!v.is_number()) ThrowRenderError(absl::StrCat("round needs a number, got ", v.TypeName()));
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  double r;
  if (method == nullptr || *method == "common") {
    r = std::nearbyint(x);  // Python's round(): halves to even
  } else if (*method == "ceil") {
    r = std::ceil(x);
  } else if (*method == "floor") {
    r = std::floor(x);
  } else {
    ThrowRenderError("round method must be common, ceil or floor");
  }
  return Value(r / scale);
}

Value ToInt(const Value& v, const CallArgs& args) {
  const Value fallback = args.Get(0, "default") ? *args.Get(0, "default") : Value(0);
  if (v.is_number()) return Value(static_cast<int64_t>(v.is_float() ? std::trunc(v.as_double()) : v.as_int()));
  if (v.is_string()) {
    const std::string s = Strip(v.as_string(), nullptr, true, true);
    int64_t i;
    if (absl::SimpleAtoi(s, &i)) return Value(i);
    double d;
    if (absl::SimpleAtod(s, &d) && std::isfinite(d)) return Value(static_cast<int64_t>(std::trunc(d)));
  }
  return fallback;
}

Value ToFloat(const Value& v, const CallArgs& args) {
  const Value fallback = args.Get(0, "default") ? *args.Get(0, "default") : Value(0.0);
  if (v.is_number()) return Value(v.as_double());
  double d;
  if (v.is_string() && absl::SimpleAtod(Strip(v.as_string(), nullptr, true, true), &d)) return Value(d);
  return fallback;
}

Value Unique(const Value& v, const CallArgs& args) {
  const bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
  const std::string* attribute = StringArg(args, 1, "attribute");
  List out;
  std::vector<Value> seen;
  for (const Value& item : Items(v, "unique")) {
    Value key = attribute == nullptr ? item : Attribute(item, *attribute);
    if (!case_sensitive && key.is_string()) key = Value(ToLower(key.as_string()));
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value(std::move(out));
}

const std::map<std::string, FilterFn, std::less<>>& Filters() {
  static const auto* const filters = new std::map<std::string, FilterFn, std::less<>>{
      {"abs",
       [](const Value& v, const CallArgs&) {
         if (!v.is_number()) ThrowRenderError(absl::StrCat("bad operand type for abs(): ", v.TypeName()));
         return v.is_float() ? Value(std::fabs(v.as_double())) : Value(std::abs(v.as_int()));
       }},
      {"capitalize", [](const Value& v, const CallArgs&) { return Value(Capitalize(v.Str())); }},
      {"count", Length},
      {"default",
       [](const Value& v, const CallArgs& args) {
         const Value* fallback = args.Get(0, "default_value");
         const bool boolean = BoolArg(args, 1, "boolean", false);
         if (v.is_undefined() || (boolean && !v.Truthy())) return fallback ? *fallback : Value("");
         return v;
       }},
      {"dictsort",
       [](const Value& v, const CallArgs& args) {
         if (!v.is_dict()) ThrowRenderError(absl::StrCat("dictsort needs a dict, got ", v.TypeName()));
         const bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
         const std::string* by = StringArg(args, 1, "by");
         const bool by_value = by != nullptr && *by == "value";
         const bool reverse = BoolArg(args, 2, "reverse", false);
         List pairs;
         for (const auto& [k, val] : v.as_dict().entries()) pairs.push_back(Value::Tuple(List{Value(k), val}));
         std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& a, const Value& b) {
           const int c = CompareForSort(a.as_list()[by_value], b.as_list()[by_value], case_sensitive);
           return reverse ? c > 0 : c < 0;
         });
         return Value(std::move(pairs));
       }},
      {"first",
       [](const Value& v, const CallArgs&) {
         List items = Items(v, "first");
         return items.empty() ? Value() : items.front();
       }},
      {"float", ToFloat},
      {"indent", Indent},
      {"int", ToInt},
      {"items",
       [](const Value& v, const CallArgs&) {
         if (v.is_undefined()) return Value(List{});
         if (!v.is_dict()) ThrowRenderError(absl::StrCat("items needs a dict, got ", v.TypeName()));
         List pairs;
         for (const auto& [k, val] : v.as_dict().entries()) pairs.push_back(Value::Tuple(List{Value(k), val}));
         return Value(std::move(pairs));
       }},
      {"join",
       [](const Value& v, const CallArgs& args) {
         const std::string* separator = StringArg(args, 0, "d");
         const std::string* attribute = StringArg(args, 1, "attribute");
         std::string out;
         bool first = true;
         for (const Value& item : Items(v, "join")) {
           if (!first && separator != nullptr) out += *separator;
           first = false;
           out += (attribute == nullptr ? item : Attribute(item, *attribute)).Str();
         }
         return Value(std::move(out));
       }},
      {"last",
       [](const Value& v, const CallArgs&) {
         List items = Items(v, "last");
         return items.empty() ? Value() : items.back();
       }},
      {"length", Length},
      {"list", [](const Value& v, const CallArgs&) { return Value(Items(v, "list")); }},
      {"lower", [](const Value& v, const CallArgs&) { return Value(ToLower(v.Str())); }},
      {"map", Map},
      {"max", [](const Value& v, const CallArgs& args) { return MinMax(v, args, true); }},
      {"min", [](const Value& v, const CallArgs& args) { return MinMax(v, args, false); }},
      {"reject", [](const Value& v, const CallArgs& args) { return Select(v, args, false, false); }},
      {"rejectattr", [](const Value& v, const CallArgs& args) { return Select(v, args, false, true); }},
      {"replace",
       [](const Value& v, const CallArgs& args) {
         const std::string* from = StringArg(args, 0, "old");
         const std::string* to = StringArg(args, 1, "new");
         if (from == nullptr || to == nullptr) ThrowRenderError("replace needs two strings");
         const Value* count = args.Get(2, "count");
         return Value(Replace(v.Str(), *from, *to, count ? RequireInt(*count, "count") : -1));
       }},
      {"reverse",
       [](const Value& v, const CallArgs&) {
         List items = Items(v, "reverse");
         std::reverse(items.begin(), items.end());
         if (!v.is_string()) return Value(std::move(items));
         std::string out;
         for (const Value& c : items) out += c.as_string();
         return Value(std::move(out));
       }},
      {"round", Round},
      {"safe", [](const Value& v, const CallArgs&) { return v; }},
      {"select", [](const Value& v, const CallArgs& args) { return Select(v, args, true, false); }},
      {"selectattr", [](const Value& v, const CallArgs& args) { return Select(v, args, true, true); }},
      {"sort", Sort},
      {"string", [](const Value& v, const CallArgs&) { return Value(v.Str()); }},
      {"sum",
       [](const Value& v, const CallArgs& args) {
         const std::string* attribute = StringArg(args, 0, "attribute");
         Value total = args.Get(1, "start") ? *args.Get(1, "start") : Value(0);
         for (const Value& item : Items(v, "sum")) {
           const Value x = attribute == nullptr ? item : Attribute(item, *attribute);
           if (!x.is_number() || !total.is_number()) ThrowRenderError("sum needs numbers");
           total = total.is_float() || x.is_float() ? Value(total.as_double() + x.as_double())
                                                    : Value(total.as_int() + x.as_int());
         }
         return total;
       }},
      {"title", [](const Value& v, const CallArgs&) { return Value(ToTitle(v.Str())); }},
      {"tojson", ToJsonFilter},
      {"trim",
       [](const Value& v, const CallArgs& args) { return Value(Strip(v.Str(), StringArg(args, 0, "chars"), true, true)); }},
      {"unique", Unique},
      {"upper", [](const Value& v, const CallArgs&) { return Value(ToUpper(v.Str())); }},
      {"wordcount",
       [](const Value& v, const CallArgs&) {
         return Value(static_cast<int64_t>(Split(v.Str(), nullptr, -1).size()));
       }},
  };
  return *filters;
}

}  // namespace

bool IsFilter(absl::string_view name) { return name == "d" || Filters().count(name) > 0; }

Value ApplyFilter(absl::string_view name, const Value& operand, const CallArgs& args) {
  auto it = Filters().find(name == "d" ? absl::string_view("default") : name);
  if (it == Filters().end()) ThrowRenderError(absl::StrCat("unknown filter '", name, "'"));
  return it->second(operand, args);
}

}  // namespace inferd::jinja

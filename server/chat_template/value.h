// The values a Jinja template computes with, with Python's semantics as
// Jinja2 (what Hugging Face's apply_chat_template runs) gives them: none,
// bool, int, float, str, list, dict (insertion-ordered), namespace, and
// callables (macros, built-in functions, bound methods); plus Jinja's
// Undefined (a missing variable or key), which prints as "".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace inferd::jinja {

class Value;

using List = std::vector<Value>;

// A dict keeps its keys in insertion order, as Python's does.
class Dict {
 public:
  const Value* Find(absl::string_view key) const;
  // Inserts or replaces, keeping the first insertion's position.
  void Set(std::string key, Value value);
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
  size_t size() const;  // defined below Value: clang needs the pair complete

 private:
  std::vector<std::pair<std::string, Value>> entries_;
};

// Arguments of a call: positional, then keyword, in the order written.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index`, else the keyword `name`, else null.
  const Value* Get(size_t index, absl::string_view name) const;
};

struct Callable {
  std::string name;  // for messages
  std::function<Value(const CallArgs&)> call;
};

// Jinja's namespace(): the one mutable object (`set ns.attr = ...`), shared
// by every copy of the value.
struct Namespace {
  Dict attributes;
};

struct Undefined {
  friend bool operator==(Undefined, Undefined) { return true; }
};
struct None {
  friend bool operator==(None, None) { return true; }
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  Value() : data_(Undefined{}) {}
  static Value MakeNone() { return Value(None{}); }
  Value(bool b) : data_(b) {}  // NOLINT: implicit, as literals are
  Value(int i) : data_(static_cast<int64_t>(i)) {}  // NOLINT
  Value(int64_t i) : data_(i) {}  // NOLINT
  Value(double d) : data_(d) {}  // NOLINT
  Value(std::string s) : data_(std::move(s)) {}  // NOLINT
  Value(const char* s) : data_(std::string(s)) {}  // NOLINT
  Value(List list) : data_(std::make_shared<const List>(std::move(list))) {}  // NOLINT
  Value(Dict dict) : data_(std::make_shared<const Dict>(std::move(dict))) {}  // NOLINT
  Value(std::shared_ptr<Namespace> ns) : data_(std::move(ns)) {}  // NOLINT
  Value(std::shared_ptr<const Callable> fn) : data_(std::move(fn)) {}  // NOLINT
  // A tuple is a list that prints as (a, b), as Python's dict.items() pairs do.
  static Value Tuple(List items) {
    Value v(std::move(items));
    v.tuple_ = true;
    return v;
  }

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  // Python's bool is an int: True + 1 == 2.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }  // tuples too
  bool is_tuple() const { return tuple_; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return is_bool() ? (as_bool() ? 1 : 0) : std::get<int64_t>(data_); }
  double as_double() const { return is_float() ? std::get<double>(data_) : static_cast<double>(as_int()); }
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const List& as_list() const { return *std::get<std::shared_ptr<const List>>(data_); }
  const Dict& as_dict() const { return *std::get<std::shared_ptr<const Dict>>(data_); }
  Namespace& as_namespace() const { return *std::get<std::shared_ptr<Namespace>>(data_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(data_); }

  // Python's bool(x) (Undefined is false).
  bool Truthy() const;
  // Python's str(x): what {{ x }} prints ("" for Undefined).
  std::string Str() const;
  // Python's repr(x): strings quoted, as inside a printed list.
  std::string Repr() const;
  // The Python type name, for error messages ("str", "int", "undefined").
  const char* TypeName() const;

 private:
  explicit Value(None n) : data_(n) {}

  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<const List>,
               std::shared_ptr<const Dict>, std::shared_ptr<Namespace>, std::shared_ptr<const Callable>>
      data_;
  bool tuple_ = false;
};

// Python's ==.
bool Equals(const Value& a, const Value& b);
// Python's <, -1/0/1; nullopt where Python raises TypeError.
std::optional<int> Compare(const Value& a, const Value& b);

// Python's repr(float) ("1.0", "0.1", "1e+16").
std::string FormatFloat(double value);

// JSON in, Value out (objects keep their key order).
Value FromJson(const nlohmann::ordered_json& json);

struct JsonOptions {
  int indent = -1;  // < 0: one line
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_separator;  // empty: Python's default for the indent
  std::string key_separator;
};
// Python's json.dumps, as Hugging Face's tojson filter calls it; nullopt
// (with `error` set) for a value JSON has no form for.
std::optional<std::string> ToJson(const Value& value, const JsonOptions& options, std::string* error);

inline size_t Dict::size() const { return entries_.size(); }

}  // namespace inferd::jinja

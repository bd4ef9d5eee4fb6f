#include "server/chat_template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "server/chat_template/text.h"

namespace inferd::jinja {

const Value* Dict::Find(absl::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Dict::Set(std::string key, Value value) {
  for (auto& [k, v] : entries_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::Get(size_t index, absl::string_view name) const {
  if (index < positional.size()) return &positional[index];
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

bool Value::Truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return as_bool();
    case Kind::kInt:
      return as_int() != 0;
    case Kind::kFloat:
      return as_double() != 0;
    case Kind::kString:
      return !as_string().empty();
    case Kind::kList:
      return !as_list().empty();
    case Kind::kDict:
      return as_dict().size() > 0;
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

std::string FormatFloat(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // The shortest digits that read back as `value`, laid out as Python's
  // repr does: positional for exponents in [-4, 16), else 1.5e+16.
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string sci(buf, result.ptr);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::stoi(sci.substr(e + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  std::string out = negative ? "-" : "";
  const int point = exponent + 1;  // digits before the decimal point
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
  }
  if (point <= 0) return out + "0." + std::string(-point, '0') + digits;
  if (static_cast<int>(digits.size()) <= point) return out + digits + std::string(point - digits.size(), '0') + ".0";
  return out + digits.substr(0, point) + "." + digits.substr(point);
}

namespace {

std::string ReprString(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", u);
      out += hex;
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

std::string ReprDict(const Dict& dict) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : dict.entries()) {
    if (!first) out += ", ";
    first = false;
    out += ReprString(k) + ": " + v.Repr();
  }
  return out + "}";
}

}  // namespace

std::string Value::Str() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return as_string();
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return as_bool() ? "True" : "False";
    case Kind::kInt:
      return std::to_string(as_int());
    case Kind::kFloat:
      return FormatFloat(as_double());
    case Kind::kString:
      return ReprString(as_string());
    case Kind::kList: {
      std::string out = is_tuple() ? "(" : "[";
      for (size_t i = 0; i < as_list().size(); ++i) {
        if (i > 0) out += ", ";
        out += as_list()[i].Repr();
      }
      if (is_tuple() && as_list().size() == 1) out += ",";
      return out + (is_tuple() ? ")" : "]");
    }
    case Kind::kDict:
      return ReprDict(as_dict());
    case Kind::kNamespace:
      return "<Namespace " + ReprDict(as_namespace().attributes) + ">";
    case Kind::kCallable:
      return "<function " + as_callable().name + ">";
  }
  return "";
}

const char* Value::TypeName() const {
  switch (kind()) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "";
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      const List& x = a.as_list();
      const List& y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equals(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const Dict& x = a.as_dict();
      const Dict& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.entries()) {
        const Value* other = y.Find(k);
        if (other == nullptr || !Equals(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace:
      return &a.as_namespace() == &b.as_namespace();
    case Value::Kind::kCallable:
      return &a.as_callable() == &b.as_callable();
    default:
      return false;
  }
}

std::optional<int> Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    // Byte order of UTF-8 is code point order, as Python compares.
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const List& x = a.as_list();
    const List& y = b.as_list();
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      if (Equals(x[i], y[i])) continue;
      return Compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return std::nullopt;
}

Value FromJson(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::MakeNone();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value(static_cast<int64_t>(json.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return Value(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List list;
      for (const auto& item : json) list.push_back(FromJson(item));
      return Value(std::move(list));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict dict;
      for (const auto& [k, v] : json.items()) dict.Set(k, FromJson(v));
      return Value(std::move(dict));
    }
    default:
      return Value();
  }
}

namespace {

void AppendJsonString(const std::string& s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  const std::u32string code_points = ensure_ascii ? DecodeUtf8(s) : std::u32string();
  auto escape = [out](char32_t c) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "\\u%04x", static_cast<unsigned>(c));
    out->append(hex);
  };
  auto append = [&](char32_t c, std::string_view raw) {
    switch (c) {
      case '"': out->append("\\\""); return;
      case '\\': out->append("\\\\"); return;
      case '\n': out->append("\\n"); return;
      case '\r': out->append("\\r"); return;
      case '\t': out->append("\\t"); return;
      case '\b': out->append("\\b"); return;
      case '\f': out->append("\\f"); return;
      default: break;
    }
    if (c < 0x20) {
      escape(c);
    } else if (ensure_ascii && c >= 0x80) {
      if (c >= 0x10000) {  // a UTF-16 surrogate pair, as Python writes it
        escape(0xD800 + ((c - 0x10000) >> 10));
        escape(0xDC00 + ((c - 0x10000) & 0x3FF));
      } else {
        escape(c);
      }
    } else {
      out->append(raw);
    }
  };
  if (ensure_ascii) {
    for (char32_t c : code_points) {
      std::string raw;
      AppendUtf8(c, &raw);
      append(c, raw);
    }
  } else {
    for (char c : s) append(static_cast<unsigned char>(c), std::string_view(&c, 1));
  }
  out->push_back('"');
}

bool AppendJson(const Value& value, const JsonOptions& options, int depth, std::string* out, std::string* error) {
  const std::string item_sep =
      !options.item_separator.empty() ? options.item_separator : (options.indent >= 0 ? "," : ", ");
  const std::string key_sep = !options.key_separator.empty() ? options.key_separator : ": ";
  auto newline = [&](int level) {
    if (options.indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(options.indent) * level, ' ');
  };
  switch (value.kind()) {
    case Value::Kind::kNone:
      out->append("null");
      return true;
    case Value::Kind::kBool:
      out->append(value.as_bool() ? "true" : "false");
      return true;
    case Value::Kind::kInt:
      out->append(std::to_string(value.as_int()));
      return true;
    case Value::Kind::kFloat:
      out->append(std::isfinite(value.as_double()) ? FormatFloat(value.as_double())
                  : std::isnan(value.as_double())  ? "NaN"
                  : value.as_double() > 0          ? "Infinity"
                                                   : "-Infinity");
      return true;
    case Value::Kind::kString:
      AppendJsonString(value.as_string(), options.ensure_ascii, out);
      return true;
    case Value::Kind::kList: {
      const List& list = value.as_list();
      if (list.empty()) {
        out->append("[]");
        return true;
      }
      out->push_back('[');
      for (size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out->append(item_sep);
        newline(depth + 1);
        if (!AppendJson(list[i], options, depth + 1, out, error)) return false;
      }
      newline(depth);
      out->push_back(']');
      return true;
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      const Dict& dict = value.is_dict() ? value.as_dict() : value.as_namespace().attributes;
      if (dict.size() == 0) {
        out->append("{}");
        return true;
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : dict.entries()) entries.push_back(&entry);
      if (options.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out->append(item_sep);
        newline(depth + 1);
        AppendJsonString(entries[i]->first, options.ensure_ascii, out);
        out->append(key_sep);
        if (!AppendJson(entries[i]->second, options, depth + 1, out, error)) return false;
      }
      newline(depth);
      out->push_back('}');
      return true;
    }
    default:
      *error = "Object of type " + std::string(value.TypeName()) + " is not JSON serializable";
      return false;
  }
}

}  // namespace

std::optional<std::string> ToJson(const Value& value, const JsonOptions& options, std::string* error) {
  std::string out;
  if (!AppendJson(value, options, 0, &out, error)) return std::nullopt;
  return out;
}

}  // namespace inferd::jinja

#include "server/chat_template/lexer.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "server/chat_template/text.h"

namespace inferd::jinja {
namespace {

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& options) : src_(source), options_(options) {
    // Jinja2 drops one trailing newline of the template (keep_trailing_newline=False).
    if (!src_.empty() && src_.back() == '\n') src_.remove_suffix(1);
  }

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      if (absl::Status s = LexText(); !s.ok()) return s;
      if (pos_ >= src_.size()) break;
      if (absl::Status s = LexTag(); !s.ok()) return s;
    }
    Push(Token::Type::kEnd, "", pos_);
    return std::move(tokens_);
  }

 private:
  absl::Status Error(size_t at, absl::string_view message) const {
    const auto [line, column] = Position(at);
    return absl::InvalidArgumentError(absl::StrCat("line ", line, ", column ", column, ": ", message));
  }

  std::pair<int, int> Position(size_t at) const {
    int line = 1, column = 1;
    for (size_t i = 0; i < at && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return {line, column};
  }

  void Push(Token::Type type, std::string value, size_t at) {
    // Positions are counted incrementally: tokens come in source order.
    for (; counted_ < at && counted_ < src_.size(); ++counted_) {
      if (src_[counted_] == '\n') {
        ++line_;
        column_ = 1;
      } else {
        ++column_;
      }
    }
    tokens_.push_back(Token{type, std::move(value), line_, column_});
  }

  bool StartsTag(size_t at) const {
    return at + 1 < src_.size() && src_[at] == '{' && (src_[at + 1] == '{' || src_[at + 1] == '%' || src_[at + 1] == '#');
  }

  // Text up to the next tag, with the whitespace control of the tags on
  // either side applied.
  absl::Status LexText() {
    size_t end = pos_;
    while (end < src_.size() && !StartsTag(end)) ++end;
    size_t begin = pos_;
    if (strip_next_text_) {
      while (begin < end && std::isspace(static_cast<unsigned char>(src_[begin]))) ++begin;
      strip_next_text_ = false;
    } else if (trim_next_newline_) {
      if (begin < end && src_[begin] == '\n') {
        ++begin;
      } else if (begin + 1 < end && src_[begin] == '\r' && src_[begin + 1] == '\n') {
        begin += 2;
      }
    }
    trim_next_newline_ = false;
    size_t text_end = end;
    if (end < src_.size()) {
      const char kind = src_[end + 1];
      const char modifier = end + 2 < src_.size() ? src_[end + 2] : '\0';
      if (modifier == '-') {
        while (text_end > begin && std::isspace(static_cast<unsigned char>(src_[text_end - 1]))) --text_end;
      } else if (options_.lstrip_blocks && modifier != '+' && (kind == '%' || kind == '#')) {
        // Only spaces and tabs between the line's start and the tag.
        size_t line_start = text_end;
        while (line_start > begin && (src_[line_start - 1] == ' ' || src_[line_start - 1] == '\t')) --line_start;
        if (line_start == 0 || src_[line_start - 1] == '\n') text_end = line_start;
      }
    }
    if (text_end > begin) Push(Token::Type::kText, std::string(src_.substr(begin, text_end - begin)), begin);
    pos_ = end;
    return absl::OkStatus();
  }

  absl::Status LexTag() {
    const size_t start = pos_;
    const char kind = src_[pos_ + 1];
    pos_ += 2;
    if (pos_ < src_.size() && (src_[pos_] == '-' || src_[pos_] == '+')) ++pos_;
    if (kind == '#') {
      const size_t close = src_.find("#}", pos_);
      if (close == std::string_view::npos) return Error(start, "comment {# is never closed by #}");
      EndTag(close > pos_ && src_[close - 1] == '-', close > pos_ && src_[close - 1] == '+', /*block=*/true);
      pos_ = close + 2;
      return absl::OkStatus();
    }
    const bool block = kind == '%';
    Push(block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, block ? "{%" : "{{", start);
    const char close_char = block ? '%' : '}';
    int depth = 0;  // open brackets: `}}` inside a dict literal does not end the tag
    while (true) {
      while (pos_ < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos_]))) ++pos_;
      if (pos_ >= src_.size()) return Error(start, block ? "tag {% is never closed by %}" : "tag {{ is never closed by }}");
      const char c = src_[pos_];
      if (depth == 0 && (c == '-' || c == '+') && pos_ + 2 < src_.size() && src_[pos_ + 1] == close_char &&
          src_[pos_ + 2] == '}') {
        Push(block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", pos_);
        EndTag(c == '-', c == '+', block);
        pos_ += 3;
        return absl::OkStatus();
      }
      if (depth == 0 && c == close_char && pos_ + 1 < src_.size() && src_[pos_ + 1] == '}') {
        Push(block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", pos_);
        EndTag(false, false, block);
        pos_ += 2;
        return absl::OkStatus();
      }
      if (absl::Status s = LexExpressionToken(&depth); !s.ok()) return s;
    }
  }

  void EndTag(bool strip, bool keep, bool block) {
    strip_next_text_ = strip;
    trim_next_newline_ = !strip && !keep && block && options_.trim_blocks;
  }

  absl::Status LexExpressionToken(int* depth) {
    const size_t start = pos_;
    const char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
      Push(Token::Type::kName, std::string(src_.substr(start, pos_ - start)), start);
      return absl::OkStatus();
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return LexNumber();
    if (c == '\'' || c == '"') return LexString();
    static constexpr std::string_view kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/",
                                                      "%",  "~",  "<",  ">",  "=",  "(",  ")", "[", "]", "{",
                                                      "}",  ",",  ".",  ":",  "|"};
    for (std::string_view op : kOperators) {
      if (src_.substr(pos_, op.size()) == op) {
        if (op == "(" || op == "[" || op == "{") ++*depth;
        if ((op == ")" || op == "]" || op == "}") && *depth > 0) --*depth;
        Push(Token::Type::kOperator, std::string(op), start);
        pos_ += op.size();
        return absl::OkStatus();
      }
    }
    return Error(start, absl::StrCat("unexpected character '", std::string(1, c), "'"));
  }

  absl::Status LexNumber() {
    const size_t start = pos_;
    auto digits = [&] {
      while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    };
    digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        is_float = true;
        pos_ = p;
        digits();
      }
    }
    std::string text;
    for (char ch : src_.substr(start, pos_ - start)) {
      if (ch != '_') text.push_back(ch);
    }
    Push(is_float ? Token::Type::kFloat : Token::Type::kInt, std::move(text), start);
    return absl::OkStatus();
  }

  // Python string literal escapes; an unknown escape keeps its backslash.
  absl::Status LexString() {
    const size_t start = pos_;
    const char quote = src_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) return Error(start, "string literal is never closed");
      const char c = src_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        continue;
      }
      if (pos_ >= src_.size()) return Error(start, "string literal is never closed");
      const char e = src_[pos_++];
      switch (e) {
        case 'n': value.push_back('\n'); break;
        case 't': value.push_back('\t'); break;
        case 'r': value.push_back('\r'); break;
        case 'b': value.push_back('\b'); break;
        case 'f': value.push_back('\f'); break;
        case 'v': value.push_back('\v'); break;
        case 'a': value.push_back('\a'); break;
        case '0': value.push_back('\0'); break;
        case '\\': case '\'': case '"': value.push_back(e); break;
        case '\n': break;  // a line continuation
        case 'x': case 'u': case 'U': {
          const size_t len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          unsigned long code = 0;
          if (pos_ + len > src_.size()) return Error(pos_ - 2, "truncated \\x, \\u or \\U escape");
          for (size_t k = 0; k < len; ++k) {
            const char h = src_[pos_ + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) return Error(pos_ - 2, "bad \\x, \\u or \\U escape");
            code = code * 16 + (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          }
          if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
            return Error(pos_ - 2, "escape is not a Unicode scalar value");
          }
          pos_ += len;
          AppendUtf8(static_cast<char32_t>(code), &value);
          break;
        }
        default:
          value.push_back('\\');
          value.push_back(e);
      }
    }
    Push(Token::Type::kString, std::move(value), start);
    return absl::OkStatus();
  }

  std::string_view src_;
  const LexerOptions options_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
  bool strip_next_text_ = false;
  bool trim_next_newline_ = false;
  size_t counted_ = 0;
  int line_ = 1;
  int column_ = 1;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, const LexerOptions& options) {
  return Lexer(source, options).Run();
}

}  // namespace inferd::jinja

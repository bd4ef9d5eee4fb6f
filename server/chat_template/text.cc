#include "server/chat_template/text.h"

#include <locale.h>
#include <wctype.h>

#include <algorithm>

namespace inferd::jinja {
namespace {

// glibc's C.UTF-8 locale carries the full Unicode case tables.
locale_t Utf8Locale() {
  static const locale_t locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
  return locale;
}

char32_t Upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  const locale_t locale = Utf8Locale();
  return locale == static_cast<locale_t>(0) ? c : static_cast<char32_t>(towupper_l(static_cast<wint_t>(c), locale));
}

char32_t Lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  const locale_t locale = Utf8Locale();
  return locale == static_cast<locale_t>(0) ? c : static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), locale));
}

bool IsCased(char32_t c) { return Upper(c) != c || Lower(c) != c; }

}  // namespace

std::u32string DecodeUtf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    char32_t c = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = len > 0 && i + len <= text.size();
    for (int k = 1; ok && k < len; ++k) {
      const unsigned char cont = static_cast<unsigned char>(text[i + k]);
      ok = (cont >> 6) == 2;
      c = (c << 6) | (cont & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(c);
    i += len;
  }
  return out;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string EncodeUtf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) AppendUtf8(c, &out);
  return out;
}

bool IsSpace(char32_t c) {
  switch (c) {
    case ' ': case '\t': case '\n': case '\v': case '\f': case '\r':
    case 0x1C: case 0x1D: case 0x1E: case 0x1F: case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

std::string ToUpper(std::string_view text) {
  std::u32string s = DecodeUtf8(text);
  for (char32_t& c : s) c = Upper(c);
  return EncodeUtf8(s);
}

std::string ToLower(std::string_view text) {
  std::u32string s = DecodeUtf8(text);
  for (char32_t& c : s) c = Lower(c);
  return EncodeUtf8(s);
}

std::string ToTitle(std::string_view text) {
  std::u32string s = DecodeUtf8(text);
  bool previous_cased = false;
  for (char32_t& c : s) {
    const bool cased = IsCased(c);
    c = previous_cased ? Lower(c) : Upper(c);
    previous_cased = cased;
  }
  return EncodeUtf8(s);
}

std::string Capitalize(std::string_view text) {
  std::u32string s = DecodeUtf8(text);
  for (size_t i = 0; i < s.size(); ++i) s[i] = i == 0 ? Upper(s[i]) : Lower(s[i]);
  return EncodeUtf8(s);
}

std::string Strip(std::string_view text, const std::string* chars, bool left, bool right) {
  const std::u32string s = DecodeUtf8(text);
  const std::u32string set = chars == nullptr ? std::u32string() : DecodeUtf8(*chars);
  auto strip = [&](char32_t c) { return chars == nullptr ? IsSpace(c) : set.find(c) != std::u32string::npos; };
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end && strip(s[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strip(s[end - 1])) --end;
  }
  return EncodeUtf8(std::u32string_view(s).substr(begin, end - begin));
}

std::vector<std::string> Split(std::string_view text, const std::string* sep, long maxsplit) {
  std::vector<std::string> out;
  if (sep != nullptr) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
      const size_t at = text.find(*sep, start);
      if (at == std::string_view::npos) break;
      out.emplace_back(text.substr(start, at - start));
      start = at + sep->size();
    }
    out.emplace_back(text.substr(start));
    return out;
  }
  const std::u32string s = DecodeUtf8(text);
  size_t i = 0;
  while (true) {
    while (i < s.size() && IsSpace(s[i])) ++i;
    if (i == s.size()) break;
    if (maxsplit >= 0 && static_cast<long>(out.size()) == maxsplit) {
      size_t end = s.size();
      while (end > i && IsSpace(s[end - 1])) --end;
      out.push_back(EncodeUtf8(std::u32string_view(s).substr(i, end - i)));
      break;
    }
    size_t j = i;
    while (j < s.size() && !IsSpace(s[j])) ++j;
    out.push_back(EncodeUtf8(std::u32string_view(s).substr(i, j - i)));
    i = j;
  }
  return out;
}

std::vector<std::string> RSplit(std::string_view text, const std::string* sep, long maxsplit) {
  if (maxsplit < 0) return Split(text, sep, maxsplit);
  std::vector<std::string> out;
  if (sep != nullptr) {
    size_t end = text.size();
    while (static_cast<long>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = text.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      out.emplace_back(text.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    out.emplace_back(text.substr(0, end));
  } else {
    const std::u32string s = DecodeUtf8(text);
    size_t end = s.size();
    while (true) {
      while (end > 0 && IsSpace(s[end - 1])) --end;
      if (end == 0) break;
      if (static_cast<long>(out.size()) == maxsplit) {
        size_t begin = 0;
        while (begin < end && IsSpace(s[begin])) ++begin;
        out.push_back(EncodeUtf8(std::u32string_view(s).substr(begin, end - begin)));
        break;
      }
      size_t begin = end;
      while (begin > 0 && !IsSpace(s[begin - 1])) --begin;
      out.push_back(EncodeUtf8(std::u32string_view(s).substr(begin, end - begin)));
      end = begin;
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string Replace(std::string_view text, std::string_view from, std::string_view to, long count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` before every code point and at the end.
    const std::u32string s = DecodeUtf8(text);
    long done = 0;
    for (char32_t c : s) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      AppendUtf8(c, &out);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  for (long done = 0; count < 0 || done < count; ++done) {
    const size_t at = text.find(from, start);
    if (at == std::string_view::npos) break;
    out.append(text.substr(start, at - start));
    out.append(to);
    start = at + from.size();
  }
  out.append(text.substr(start));
  return out;
}

}  // namespace inferd::jinja

// Unicode-aware string helpers with Python's str semantics, for the Jinja
// interpreter: code points (not bytes) for length, indexing and slicing;
// Python's whitespace set for strip/split; simple (one-to-one) case mapping.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace inferd::jinja {

// Code points of UTF-8 `text`; an invalid byte becomes U+FFFD.
std::u32string DecodeUtf8(std::string_view text);
std::string EncodeUtf8(std::u32string_view text);
void AppendUtf8(char32_t c, std::string* out);

// Python's str.isspace().
bool IsSpace(char32_t c);

std::string ToUpper(std::string_view text);
std::string ToLower(std::string_view text);
// Python's str.title(): upper case after a non-letter, lower case elsewhere.
std::string ToTitle(std::string_view text);
// Python's str.capitalize().
std::string Capitalize(std::string_view text);

// Python's str.strip/lstrip/rstrip: `chars` null strips whitespace.
std::string Strip(std::string_view text, const std::string* chars, bool left, bool right);

// Python's str.split(sep, maxsplit) (sep null: runs of whitespace) and
// str.rsplit.
std::vector<std::string> Split(std::string_view text, const std::string* sep, long maxsplit);
std::vector<std::string> RSplit(std::string_view text, const std::string* sep, long maxsplit);

// Python's str.replace(old, new, count); count < 0 replaces all.
std::string Replace(std::string_view text, std::string_view from, std::string_view to, long count);

}  // namespace inferd::jinja

// GPT-2's byte-level alphabet: each of the 256 byte values is written as one
// printable Unicode character (printable Latin-1 bytes as themselves, the
// rest as U+0100 onwards: ' ' is 'Ġ', '\n' is 'Ċ'), so that byte-level BPE
// vocabularies are valid UTF-8 strings.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace inferd {

// The UTF-8 of the character standing for `byte`.
std::string_view ByteLevelChar(unsigned char byte);

// `bytes` written in the byte-level alphabet.
std::string ToByteLevel(std::string_view bytes);

// The bytes a byte-level string stands for; nullopt when it holds a
// character outside the alphabet.
std::optional<std::string> FromByteLevel(std::string_view text);

}  // namespace inferd

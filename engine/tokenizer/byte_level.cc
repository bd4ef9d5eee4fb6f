#include "engine/tokenizer/byte_level.h"

#include <array>
#include <cstdint>


namespace inferd {
namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  // Byte per code point of the alphabet (all below U+0144); -1 elsewhere.
  std::array<int16_t, 0x144> from_code_point;
};

std::string EncodeUtf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode(): '!'..'~', '¡'..'¬', '®'..'ÿ' map to
// themselves; the other bytes, in order, to U+0100, U+0101, ...
const Tables& GetTables() {
  static const Tables* tables = [] {
    auto* t = new Tables;
    t->from_code_point.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : next++;
      t->to_char[b] = EncodeUtf8(cp);
      t->from_code_point[cp] = static_cast<unsigned char>(b);
    }
    return t;
  }();
  return *tables;
}

}  // namespace

std::string_view ByteLevelChar(unsigned char byte) { return GetTables().to_char[byte]; }

std::string ToByteLevel(std::string_view bytes) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out.append(t.to_char[static_cast<unsigned char>(c)]);
  return out;
}

std::optional<std::string> FromByteLevel(std::string_view text) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(text.size());
  // The alphabet's code points are below U+0800: one or two UTF-8 bytes.
  for (size_t i = 0; i < text.size();) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    uint32_t cp;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if ((b0 & 0xE0) == 0xC0 && i + 1 < text.size()) {
      cp = ((b0 & 0x1F) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3F);
      i += 2;
    } else {
      return std::nullopt;
    }
    if (cp >= t.from_code_point.size() || t.from_code_point[cp] < 0) return std::nullopt;
    out += static_cast<char>(t.from_code_point[cp]);
  }
  return out;
}

}  // namespace inferd

#include "engine/tokenizer/utf8.h"

#include <cstdint>

namespace inferd {

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char lead = s[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    int continuation;
    uint32_t cp;
    if ((lead & 0xE0) == 0xC0) {
      continuation = 1, cp = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      continuation = 2, cp = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      continuation = 3, cp = lead & 0x07;
    } else {
      return false;
    }
    if (i + continuation >= s.size()) return false;
    for (int k = 1; k <= continuation; ++k) {
      const unsigned char c = s[i + k];
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const uint32_t smallest = continuation == 1 ? 0x80 : continuation == 2 ? 0x800 : 0x10000;
    if (cp < smallest || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;  // overlong, too big, surrogate
    i += continuation + 1;
  }
  return true;
}

}  // namespace inferd

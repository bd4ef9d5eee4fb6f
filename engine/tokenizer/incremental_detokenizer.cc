#include "engine/tokenizer/incremental_detokenizer.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "engine/tokenizer/clean_up_spaces.h"

namespace inferd {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed sequence `lead` starts (Unicode Table 3-7), or 0
// when it can start none (a continuation byte, C0/C1 which only make
// overlongs, F5..FF which only make code points above U+10FFFF).
int SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `byte` may follow as continuation number `index` (1-based) of a
// sequence led by `lead`. Only the first continuation is restricted beyond
// 80..BF: that is what rules out overlongs (E0, F0), surrogates (ED) and code
// points above U+10FFFF (F4) as early as possible.
bool IsValidContinuation(uint8_t lead, int index, uint8_t byte) {
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
  if (index == 1) {
    switch (lead) {
      case 0xE0: lo = 0xA0; break;
      case 0xED: hi = 0x9F; break;
      case 0xF0: lo = 0x90; break;
      case 0xF4: hi = 0x8F; break;
      default: break;
    }
  }
  return byte >= lo && byte <= hi;
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer,
                                               int prev_token)
    : tokenizer_(tokenizer), prev_token_(prev_token) {}

// Invalid input becomes one U+FFFD per "maximal subpart" (the Unicode /
// WHATWG practice, and what Python's and Rust's lossy decoders do): a lead
// byte plus the continuation bytes that were valid for it until the first one
// that was not. Stray continuation bytes and bytes that can never lead (C0,
// C1, F5..FF) are their own subpart, so an overlong, surrogate or
// out-of-range form gives one U+FFFD per byte; a character cut short by a
// byte that cannot continue it (E4 B8 'a') gives a single U+FFFD. Because a
// subpart is replaced only once the byte that ends it has arrived, the output
// does not depend on how the bytes are split into tokens.
std::string IncrementalDetokenizer::Append(int token) {
  pending_.append(tokenizer_->DecodeToken(prev_token_, token));
  if (!tokenizer_->IsSpecial(token)) prev_token_ = token;

  const auto* bytes = reinterpret_cast<const uint8_t*>(pending_.data());
  const size_t size = pending_.size();
  std::string out;
  out.reserve(size);
  size_t i = 0;
  while (i < size) {
    const uint8_t lead = bytes[i];
    const int length = SequenceLength(lead);
    if (length == 0) {
      out.append(kReplacement);
      ++i;
      continue;
    }
    int valid = 1;  // bytes of this sequence known to be valid so far
    while (valid < length && i + valid < size &&
           IsValidContinuation(lead, valid, bytes[i + valid])) {
      ++valid;
    }
    if (valid == length) {
      out.append(pending_, i, length);
      i += length;
    } else if (i + valid == size) {
      break;  // a valid prefix the next token may complete: hold it
    } else {
      out.append(kReplacement);  // the byte at i + valid starts anew
      i += valid;
    }
  }
  pending_.erase(0, i);
  return CleanUp(std::move(out), /*final=*/false);
}

std::string IncrementalDetokenizer::CleanUp(std::string text, bool final) {
  if (!tokenizer_->CleansUpSpaces()) return text;
  held_.append(text);
  const size_t cut = final ? held_.size() : CleanUpSafePrefix(held_);
  std::string out = CleanUpTokenizationSpaces(std::string_view(held_).substr(0, cut));
  held_.erase(0, cut);
  return out;
}

// What is held is always a single valid-but-unfinished prefix, i.e. one
// maximal subpart, so it becomes a single U+FFFD (as a lossy decode of the
// whole text would give).
std::string IncrementalDetokenizer::Flush() {
  std::string rest;
  if (!pending_.empty()) rest = kReplacement;
  pending_.clear();
  return CleanUp(std::move(rest), /*final=*/true);
}

}  // namespace inferd

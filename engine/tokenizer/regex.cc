#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"

namespace inferd {

void Regex::CodeDeleter::operator()(pcre2_real_code_8* code) const { pcre2_code_free(code); }

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("regex \"", std::string(pattern),
                                                   "\": ", reinterpret_cast<char*>(message), " at offset ", offset));
  }
  // Without JIT (an unsupported CPU) the interpreter gives the same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  Regex regex;
  regex.code_ = std::shared_ptr<pcre2_real_code_8>(code, CodeDeleter());
  uint32_t captures = 0;
  pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &captures);
  regex.capture_count_ = static_cast<int>(captures);
  return regex;
}

std::string Regex::Quote(std::string_view literal) {
  // \Q...\E quotes everything but a literal "\E", which is split off.
  std::string out = "\\Q";
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'E') {
      out += "\\E\\\\\\Q";
      continue;
    }
    out += literal[i];
  }
  out += "\\E";
  return out;
}

size_t Regex::NextCharacter(std::string_view text, size_t i) {
  ++i;
  while (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) ++i;
  return i;
}

Regex::Searcher::Searcher(const Regex& regex)
    : regex_(regex), match_data_(pcre2_match_data_create_from_pattern(regex.code_.get(), nullptr)) {}

Regex::Searcher::~Searcher() { pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_)); }

bool Regex::Searcher::Find(std::string_view text, size_t start, Match* match) {
  auto* data = static_cast<pcre2_match_data*>(match_data_);
  // Text is checked for valid UTF-8 once, by the tokenizer, not per search.
  int rc = pcre2_match(regex_.code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start,
                       PCRE2_NO_UTF_CHECK, data, nullptr);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    // The JIT's fixed stack can run out on a huge run of one class; the
    // interpreter backtracks on the heap.
    rc = pcre2_match(regex_.code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start,
                     PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
  }
  if (rc < 0) return false;
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
  match->begin = ovector[0];
  match->end = ovector[1];
  match->group = 0;
  for (int g = 1; g < rc; ++g) {
    if (ovector[2 * g] != PCRE2_UNSET) {
      match->group = g;
      break;
    }
  }
  return true;
}

}  // namespace inferd

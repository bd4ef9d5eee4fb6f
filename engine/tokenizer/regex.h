// A compiled PCRE2 pattern for tokenizers: UTF mode with Unicode properties
// (UCP, so \s, \w and \d are Unicode's, as in Oniguruma and Rust's regex),
// JIT-compiled. Thread-safe: every search uses its own match data.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

struct pcre2_real_code_8;

namespace inferd {

class Regex {
 public:
  struct Match {
    size_t begin = 0;
    size_t end = 0;
    int group = 0;  // the lowest-numbered capture group that took part; 0 if none
  };

  // Errors name the pattern and PCRE2's message with its offset.
  static absl::StatusOr<Regex> Compile(std::string_view pattern);

  // Calls `on_match(begin, end, group)` for each non-overlapping match of
  // `text`, left to right. An empty match advances by one character.
  template <typename F>
  void ForEachMatch(std::string_view text, F&& on_match) const {
    Searcher s(*this);
    size_t start = 0;
    Match m;
    while (start <= text.size() && s.Find(text, start, &m)) {
      on_match(m);
      start = m.end > m.begin ? m.end : NextCharacter(text, m.end);
    }
  }

  // The pattern's text with every metacharacter escaped.
  static std::string Quote(std::string_view literal);

 private:
  class Searcher {
   public:
    explicit Searcher(const Regex& regex);
    ~Searcher();
    Searcher(const Searcher&) = delete;
    Searcher& operator=(const Searcher&) = delete;
    bool Find(std::string_view text, size_t start, Match* match);

   private:
    const Regex& regex_;
    void* match_data_;
  };

  struct CodeDeleter {
    void operator()(pcre2_real_code_8* code) const;
  };

  static size_t NextCharacter(std::string_view text, size_t i);

  std::shared_ptr<pcre2_real_code_8> code_;
  int capture_count_ = 0;
};

}  // namespace inferd

// Turns a stream of token ids into a stream of text deltas that are always
// valid UTF-8: bytes of a character split across tokens wait for the token
// that completes it. For tokenizers that clean up spaces, text that a later
// token could still change (a trailing " " before a possible ".") waits too,
// so the deltas always add up to the lossy UTF-8 of Tokenizer::Decode.
#pragma once

#include <string>

#include "engine/tokenizer/tokenizer.h"

namespace inferd {

class IncrementalDetokenizer {
 public:
  // `prev_token` is the token before the first one to decode (the last
  // prompt token), which decides the leading-space rule after BOS.
  IncrementalDetokenizer(const Tokenizer* tokenizer, int prev_token);

  // Decodes `token` and returns the text that became complete: every whole,
  // valid UTF-8 character so far not yet returned. A sequence that can never
  // become valid (a stray continuation byte, an overlong or surrogate form)
  // comes out as U+FFFD, one per bad byte, as soon as it is known to be bad.
  std::string Append(int token);

  // What was held back: the bytes of an unfinished character as U+FFFD, and
  // text waiting for the clean-up; call once at the end of the sequence.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  int prev_token_;
  std::string pending_;  // bytes of an incomplete character
  std::string held_;     // valid text not yet cleaned up (CleansUpSpaces only)
  // Emits the part of held_ + `text` that the clean-up can no longer change.
  std::string CleanUp(std::string text, bool final);
};

}  // namespace inferd

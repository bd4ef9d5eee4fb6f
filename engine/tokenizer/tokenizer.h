// The tokenizer interface every format implements (llama2.c scores,
// tokenizer.json BPE, SentencePiece .model, GGUF metadata): text to ids and
// ids back to bytes, token by token so that streamed text can be cut at any
// token. Implementations are immutable after loading and thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"

namespace inferd {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`; BOS first when `add_bos` and the tokenizer has one.
  virtual std::vector<int> Encode(std::string_view text, bool add_bos) const = 0;

  // Whether a request that does not say otherwise gets BOS before its text
  // (tokenizer_config.json's add_bos_token, the post-processor, or GGUF's
  // tokenizer.ggml.add_bos_token).
  virtual bool AddsBosByDefault() const { return bos_id() >= 0; }

  // The bytes `token` stands for when it follows `prev_token` (-1: the first
  // token of a text). The result may be part of a UTF-8 character; control
  // tokens (BOS, EOS, ...) and ids outside the vocabulary decode to "".
  virtual std::string_view DecodeToken(int prev_token, int token) const = 0;

  // Text of `ids` (the first decoded as if it followed `prev_token`): the
  // concatenation of DecodeToken, plus whatever whole-text clean-up the
  // format asks for. May end in a partial UTF-8 character.
  virtual std::string Decode(absl::Span<const int> ids, int prev_token = -1) const;

  // The vocabulary entry as stored (for Tokenize's `pieces`).
  virtual const std::string& Piece(int id) const = 0;
  virtual int vocab_size() const = 0;
  // -1 when the tokenizer has none.
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
};

}  // namespace inferd

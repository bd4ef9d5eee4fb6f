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

  struct EncodeOptions {
    // BOS (or the post-processor's prefix) first, when the tokenizer has one.
    bool add_bos = false;
    // Whether special-token text in `text` ("<|im_start|>") becomes the
    // special token, as Hugging Face does by default, or plain text. The
    // server sets it from `tokenizer_parse_special`.
    bool parse_special = true;
  };

  // Token ids of `text`.
  virtual std::vector<int> Encode(std::string_view text, const EncodeOptions& options) const = 0;
  std::vector<int> Encode(std::string_view text, bool add_bos) const {
    return Encode(text, EncodeOptions{.add_bos = add_bos});
  }

  // Whether a request that does not say otherwise gets BOS before its text
  // (tokenizer_config.json's add_bos_token, the post-processor, or GGUF's
  // tokenizer.ggml.add_bos_token).
  virtual bool AddsBosByDefault() const { return bos_id() >= 0; }

  // The bytes `token` stands for when it follows `prev_token` (-1: the first
  // token of a text). The result may be part of a UTF-8 character; control
  // tokens (BOS, EOS, ...) and ids outside the vocabulary decode to "".
  virtual std::string_view DecodeToken(int prev_token, int token) const = 0;

  // A special token (tokenizer.json's `special`, SentencePiece's control
  // tokens): it decodes to "" and does not count as `prev_token`, so text on
  // either side of it decodes as if it were absent (Hugging Face's
  // skip_special_tokens). llama2.c's BOS/EOS are not: they decode to "" but
  // do count as `prev_token`.
  virtual bool IsSpecial(int id) const { return false; }

  // Whether decoded text gets Hugging Face's clean_up_tokenization_spaces
  // (" ." -> ".", " n't" -> "n't", ...; see clean_up_spaces.h).
  virtual bool CleansUpSpaces() const { return false; }

  // Text of `ids` (the first decoded as if it followed `prev_token`): the
  // concatenation of DecodeToken (special tokens skipped as `prev_token`),
  // then the clean-up of CleansUpSpaces(). May hold invalid UTF-8.
  virtual std::string Decode(absl::Span<const int> ids, int prev_token = -1) const;

  // The vocabulary entry as stored (for Tokenize's `pieces`).
  virtual const std::string& Piece(int id) const = 0;
  virtual int vocab_size() const = 0;
  // -1 when the tokenizer has none.
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
};

}  // namespace inferd

// llama2.c-format tokenizer: SentencePiece-style BPE over a scored
// vocabulary, with byte fallback (<0xXX> tokens) and a dummy-prefix space.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

class Llama2cTokenizer : public Tokenizer {
 public:
  static constexpr int kUnkId = 0;
  static constexpr int kBosId = 1;
  static constexpr int kEosId = 2;

  // Reads llama2.c's tokenizer.bin: int32 max_token_length, then per token
  // float32 score, int32 byte length, bytes. `vocab_size` is the number of
  // entries the file must hold (the model's vocabulary); every error names
  // `path` and what is wrong with it.
  static absl::StatusOr<Llama2cTokenizer> Load(const std::string& path, int vocab_size);

  // The same tokenizer from its pieces (spaces as ' ', not U+2581; byte
  // tokens as "<0xXX>") and scores, e.g. from GGUF metadata. Ids 0, 1, 2 must
  // be <unk>, BOS and EOS. `adds_bos_by_default`: GGUF's add_bos_token.
  static absl::StatusOr<Llama2cTokenizer> FromVocab(std::vector<std::string> pieces,
                                                    std::vector<float> scores,
                                                    bool adds_bos_by_default = true);

  // BOS (if add_bos), then the dummy-prefix space for non-empty text, UTF-8
  // code points (byte tokens for those not in the vocabulary), then BPE
  // merges by score (the leftmost pair on ties), as llama2.c encodes.
  // Runs in O(n log n) in the text length.
  using Tokenizer::Encode;
  std::vector<int> Encode(std::string_view text, const EncodeOptions& options) const override;

  // The bytes token `token` stands for when it follows `prev_token`: the
  // leading space of a piece right after BOS is dropped, <0xXX> pieces are
  // one raw byte; BOS, EOS and ids outside the vocabulary decode to "".
  std::string_view DecodeToken(int prev_token, int token) const override;

  // The vocabulary entry as stored (for Tokenize's `pieces`).
  const std::string& Piece(int id) const override { return pieces_[id]; }
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  bool AddsBosByDefault() const override { return adds_bos_by_default_; }
  int bos_id() const override { return kBosId; }
  int eos_id() const override { return kEosId; }

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  absl::flat_hash_map<std::string, int> piece_to_id_;
  // Precomputed single-byte strings for <0xXX> pieces (indexed by id);
  // empty for other pieces.
  std::vector<std::string> byte_piece_;
  int max_token_length_ = 0;
  bool adds_bos_by_default_ = true;
};

}  // namespace inferd

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

namespace inferd {

class Tokenizer {
 public:
  static constexpr int kUnkId = 0;
  static constexpr int kBosId = 1;
  static constexpr int kEosId = 2;

  // Reads llama2.c's tokenizer.bin: int32 max_token_length, then per token
  // float32 score, int32 byte length, bytes. `vocab_size` is the number of
  // entries the file must hold (the model's vocabulary); every error names
  // `path` and what is wrong with it.
  static absl::StatusOr<Tokenizer> LoadLlama2c(const std::string& path, int vocab_size);

  // BOS (if add_bos), then the dummy-prefix space for non-empty text, UTF-8
  // code points (byte tokens for those not in the vocabulary), then BPE
  // merges by score (the leftmost pair on ties), as llama2.c encodes.
  // Runs in O(n log n) in the text length.
  std::vector<int> Encode(std::string_view text, bool add_bos) const;

  // The bytes token `token` stands for when it follows `prev_token`: the
  // leading space of a piece right after BOS is dropped, <0xXX> pieces are
  // one raw byte; BOS, EOS and ids outside the vocabulary decode to "".
  std::string_view DecodeToken(int prev_token, int token) const;

  // Concatenation of DecodeToken over `ids` (the first one is decoded as if
  // it followed `prev_token`). The result may end in a partial UTF-8 char.
  std::string Decode(absl::Span<const int> ids, int prev_token = -1) const;

  // The vocabulary entry as stored (for Tokenize's `pieces`).
  const std::string& Piece(int id) const { return pieces_[id]; }
  int vocab_size() const { return static_cast<int>(pieces_.size()); }

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  absl::flat_hash_map<std::string, int> piece_to_id_;
  // Precomputed single-byte strings for <0xXX> pieces (indexed by id);
  // empty for other pieces.
  std::vector<std::string> byte_piece_;
  int max_token_length_ = 0;
};

}  // namespace inferd

// tokenizer.json's BPE `model`: a vocabulary and ranked merges, applied to
// one pre-tokenized word at a time (lowest-ranked adjacent pair first, the
// leftmost on ties, as Hugging Face's tokenizers does). Also `ignore_merges`
// (a word in the vocabulary is one token), `byte_fallback` (<0xXX> tokens for
// characters outside the vocabulary) and `unk_token` with `fuse_unk`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace inferd {

class BpeModel {
 public:
  // `config` is tokenizer.json's "model"; errors name `json_path` ("model.merges[12]").
  static absl::StatusOr<BpeModel> FromJson(const nlohmann::json& config, const std::string& json_path);

  // Appends the ids of `word` to `ids`.
  void EncodeWord(std::string_view word, std::vector<int>* ids) const;

  // Vocabulary entries by id ("" where an id has none).
  const std::vector<std::string>& pieces() const { return pieces_; }
  // -1 when absent.
  int TokenId(std::string_view piece) const;

 private:
  struct Merge {
    int rank;
    int merged_id;
  };
  static uint64_t PairKey(int left, int right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  // The ids of `word`'s characters before any merge (byte fallback and
  // unknown handling applied).
  void InitialSymbols(std::string_view word, std::vector<int>* symbols) const;
  void MergeSymbols(std::vector<int>* symbols) const;

  absl::flat_hash_map<std::string, int> vocab_;
  std::vector<std::string> pieces_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::vector<int> byte_fallback_ids_;  // id of <0xXX> per byte, when byte_fallback
  int unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
};

}  // namespace inferd

#include "engine/tokenizer/bpe_model.h"

#include <algorithm>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/hf_json.h"
#include "nlohmann/json.hpp"

namespace inferd {
namespace {

size_t CharLength(std::string_view s, size_t i) {
  size_t j = i + 1;
  while (j < s.size() && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) ++j;
  return j - i;
}

// A merge's two sides: "a b" (split at the one space) or ["a", "b"].
absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const nlohmann::json& merge,
                                                                const std::string& path) {
  if (merge.is_string()) {
    const std::string& s = merge.get_ref<const std::string&>();
    const size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", s, "\" is not two tokens split by one space"));
    }
    return std::make_pair(s.substr(0, space), s.substr(space + 1));
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return std::make_pair(merge[0].get<std::string>(), merge[1].get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": expected \"a b\" or [\"a\", \"b\"]"));
}

}  // namespace

absl::StatusOr<BpeModel> BpeModel::FromJson(const nlohmann::json& config, const std::string& json_path) {
  absl::StatusOr<std::string> type = JsonString(config, "type", json_path);
  if (!type.ok()) return type.status();
  if (*type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat(json_path, ".type: model \"", *type, "\" is not supported (only BPE is)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (config.contains(key) && !config[key].is_null() &&
        !(config[key].is_string() && config[key].get<std::string>().empty())) {
      return absl::UnimplementedError(absl::StrCat(json_path, ".", key, ": is not supported"));
    }
  }
  if (config.contains("dropout") && !config["dropout"].is_null() && config["dropout"].get<double>() != 0.0) {
    return absl::UnimplementedError(absl::StrCat(json_path, ".dropout: BPE dropout is not supported"));
  }

  BpeModel model;
  const std::string vocab_path = json_path + ".vocab";
  if (!config.contains("vocab") || !config["vocab"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(vocab_path, ": expected an object of token: id"));
  }
  const nlohmann::json& vocab = config["vocab"];
  model.vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= kMaxTokenId) {
      return absl::InvalidArgumentError(
          absl::StrCat(vocab_path, "[\"", it.key(), "\"]: expected an id in [0, ", kMaxTokenId, ")"));
    }
    const int id = it.value().get<int>();
    if (static_cast<size_t>(id) >= model.pieces_.size()) model.pieces_.resize(id + 1);
    model.pieces_[id] = it.key();
    model.vocab_.emplace(it.key(), id);
  }

  const std::string merges_path = json_path + ".merges";
  if (!config.contains("merges") || !config["merges"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(merges_path, ": expected an array"));
  }
  const nlohmann::json& merges = config["merges"];
  model.merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string path = absl::StrCat(merges_path, "[", rank, "]");
    absl::StatusOr<std::pair<std::string, std::string>> merge = ParseMerge(merges[rank], path);
    if (!merge.ok()) return merge.status();
    const int left = model.TokenId(merge->first);
    const int right = model.TokenId(merge->second);
    const int merged = model.TokenId(merge->first + merge->second);
    if (left < 0 || right < 0 || merged < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", merge->first, "\" + \"", merge->second,
                                                     "\" uses or makes a token outside the vocabulary"));
    }
    // The first (best-ranked) merge of a pair wins, as in Hugging Face's.
    model.merges_.try_emplace(PairKey(left, right), Merge{static_cast<int>(rank), merged});
  }

  if (config.contains("unk_token") && !config["unk_token"].is_null()) {
    absl::StatusOr<std::string> unk = JsonString(config, "unk_token", json_path);
    if (!unk.ok()) return unk.status();
    model.unk_id_ = model.TokenId(*unk);
    if (model.unk_id_ < 0) {
      return absl::InvalidArgumentError(absl::StrCat(json_path, ".unk_token: \"", *unk, "\" is not in the vocabulary"));
    }
  }
  absl::StatusOr<bool> fuse_unk = JsonBool(config, "fuse_unk", json_path, false);
  absl::StatusOr<bool> byte_fallback = JsonBool(config, "byte_fallback", json_path, false);
  absl::StatusOr<bool> ignore_merges = JsonBool(config, "ignore_merges", json_path, false);
  for (const auto* s : {&fuse_unk, &byte_fallback, &ignore_merges}) {
    if (!s->ok()) return s->status();
  }
  model.fuse_unk_ = *fuse_unk;
  model.ignore_merges_ = *ignore_merges;
  if (*byte_fallback) {
    model.byte_fallback_ids_.resize(256);
    for (int b = 0; b < 256; ++b) {
      model.byte_fallback_ids_[b] = model.TokenId(absl::StrFormat("<0x%02X>", b));
      if (model.byte_fallback_ids_[b] < 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s.byte_fallback: the vocabulary has no <0x%02X> token", json_path, b));
      }
    }
  }
  return model;
}

int BpeModel::TokenId(std::string_view piece) const {
  auto it = vocab_.find(absl::string_view(piece.data(), piece.size()));
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int>* symbols) const {
  bool last_was_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t n = CharLength(word, i);
    const int id = TokenId(word.substr(i, n));
    if (id >= 0) {
      symbols->push_back(id);
      last_was_unk = false;
    } else if (!byte_fallback_ids_.empty()) {
      for (size_t k = i; k < i + n; ++k) symbols->push_back(byte_fallback_ids_[static_cast<unsigned char>(word[k])]);
      last_was_unk = false;
    } else if (unk_id_ >= 0) {
      if (!(fuse_unk_ && last_was_unk)) symbols->push_back(unk_id_);
      last_was_unk = true;
    }
    // Without byte fallback or an unknown token, the character is dropped,
    // as Hugging Face's BPE does.
    i += n;
  }
}

// Hugging Face's Word::merge_all: a queue of candidate merges by (rank,
// position); a popped candidate whose symbols changed since is skipped. The
// symbols form a linked list so each merge costs O(log n).
void BpeModel::MergeSymbols(std::vector<int>* symbols) const {
  const int n = static_cast<int>(symbols->size());
  if (n < 2) return;
  std::vector<int> id = *symbols;
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int rank;
    int pos;
    int merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    auto it = merges_.find(PairKey(id[pos], id[next[pos]]));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.merged_id});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    auto it = merges_.find(PairKey(id[c.pos], id[next[c.pos]]));
    if (it == merges_.end() || it->second.merged_id != c.merged_id) continue;
    const int right = next[c.pos];
    id[c.pos] = c.merged_id;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  symbols->clear();
  for (int i = 0; i >= 0; i = next[i]) symbols->push_back(id[i]);
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const int id = TokenId(word); id >= 0) {
      ids->push_back(id);
      return;
    }
  }
  std::vector<int> symbols;
  symbols.reserve(word.size());
  InitialSymbols(word, &symbols);
  MergeSymbols(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

}  // namespace inferd

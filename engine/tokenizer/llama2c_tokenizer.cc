#include "engine/tokenizer/llama2c_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <queue>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace inferd {
namespace {

// No real vocabulary comes near these; they bound what a corrupt header can
// make us allocate.
constexpr int kMaxVocabSize = 1 << 22;
constexpr int kMaxPieceBytes = 4096;
// llama2.c starts its best-pair search at this score, so a pair scoring at or
// below it never merges.
constexpr float kNoMergeScore = -1e10f;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte a "<0xXX>" byte-fallback piece stands for.
std::optional<char> ParseBytePiece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  const int hi = HexDigit(piece[3]);
  const int lo = HexDigit(piece[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<char>(hi * 16 + lo);
}

// Backing store for byte pieces reached only after stripping a leading space
// (no real vocabulary has " <0xXX>", but llama2.c would decode it as a byte).
const std::array<char, 256>& AllBytes() {
  static const std::array<char, 256> bytes = [] {
    std::array<char, 256> b{};
    for (int i = 0; i < 256; ++i) b[i] = static_cast<char>(i);
    return b;
  }();
  return bytes;
}

// Bounds-checked little-endian reader over the file's bytes.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  size_t pos() const { return pos_; }
  size_t left() const { return data_.size() - pos_; }
  template <typename T>
  bool Read(T* out) {
    if (left() < sizeof(T)) return false;
    std::memcpy(out, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  std::string_view Take(size_t n) {
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<Llama2cTokenizer> Llama2cTokenizer::Load(const std::string& path, int vocab_size) {
  const std::string where = absl::StrCat("tokenizer ", path, ": ");
  // Ids 0..2 (<unk>, <s>, </s>) are used by Encode and by every caller.
  if (vocab_size < 3 || vocab_size > kMaxVocabSize) {
    return absl::InvalidArgumentError(absl::StrCat(where, "vocab_size ", vocab_size,
                                                   " is outside [3, ", kMaxVocabSize, "]"));
  }
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return absl::InvalidArgumentError(absl::StrCat(where, "cannot stat: ", ec.message()));
    }
    return absl::NotFoundError(absl::StrCat(where, "no such file"));
  }
  if (!std::filesystem::is_regular_file(st)) {
    return absl::InvalidArgumentError(absl::StrCat(where, "not a regular file"));
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat(where, "cannot stat: ", ec.message()));
  // The largest file a vocab_size-entry tokenizer can be; anything bigger
  // cannot match the model, and refusing it here keeps the read bounded.
  const uintmax_t max_size = 4 + static_cast<uintmax_t>(vocab_size) * (8 + kMaxPieceBytes);
  if (size > max_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "file is ", size, " bytes, more than any ", vocab_size, "-token tokenizer (",
        max_size, "): tokenizer has more than ", vocab_size, " tokens; the model's vocabulary is ",
        vocab_size));
  }
  std::string data(static_cast<size_t>(size), '\0');
  std::ifstream in(path, std::ios::binary);
  if (!in || !in.read(data.data(), static_cast<std::streamsize>(data.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(where, "cannot read ", size, " bytes"));
  }

  Reader reader(data);
  int32_t max_len = 0;
  if (!reader.Read(&max_len)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "truncated: ", size, " bytes, shorter than the 4-byte header"));
  }
  if (max_len < 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, "max_token_length ", max_len, " < 0"));
  }
  const int len_limit = std::min<int>(max_len, kMaxPieceBytes);
  std::vector<std::string> pieces;
  std::vector<float> scores;
  pieces.reserve(vocab_size);
  scores.reserve(vocab_size);
  for (int id = 0; id < vocab_size; ++id) {
    float score = 0;
    int32_t len = 0;
    if (!reader.Read(&score) || !reader.Read(&len)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "truncated: file ends in the header of token ", id, " of ",
                       vocab_size, " (at byte ", reader.pos(), " of ", size, ")"));
    }
    if (len < 0 || len > len_limit) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "token ", id, " has length ", len, ", outside [0, ", len_limit,
                       "] (max_token_length ", max_len, ", hard limit ", kMaxPieceBytes, ")"));
    }
    if (reader.left() < static_cast<size_t>(len)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "truncated: token ", id, " of ", vocab_size, " needs ", len, " bytes at byte ",
          reader.pos(), " but the file has ", reader.left(), " left"));
    }
    pieces.emplace_back(reader.Take(len));
    scores.push_back(score);
  }
  if (reader.left() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, reader.left(), " bytes after ", vocab_size,
        " tokens: tokenizer has more than ", vocab_size, " tokens; the model's vocabulary is ",
        vocab_size));
  }
  return FromVocab(std::move(pieces), std::move(scores));
}

absl::StatusOr<Llama2cTokenizer> Llama2cTokenizer::FromVocab(std::vector<std::string> pieces,
                                                             std::vector<float> scores, bool adds_bos_by_default) {
  const int vocab_size = static_cast<int>(pieces.size());
  if (vocab_size < 3 || vocab_size > kMaxVocabSize || scores.size() != pieces.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", vocab_size, " pieces and ",
                                                   scores.size(), " scores (need equal counts in [3, ",
                                                   kMaxVocabSize, "])"));
  }
  Llama2cTokenizer tok;
  tok.adds_bos_by_default_ = adds_bos_by_default;
  tok.byte_piece_.resize(vocab_size);
  tok.piece_to_id_.reserve(vocab_size);
  for (int id = 0; id < vocab_size; ++id) {
    const std::string& piece = pieces[id];
    tok.max_token_length_ = std::max(tok.max_token_length_, static_cast<int>(piece.size()));
    if (std::optional<char> b = ParseBytePiece(piece)) tok.byte_piece_[id] = std::string(1, *b);
    // llama2.c's lookup on duplicate pieces is unspecified; keep the first.
    tok.piece_to_id_.try_emplace(piece, id);
  }
  tok.pieces_ = std::move(pieces);
  tok.scores_ = std::move(scores);
  return tok;
}

// llama2.c has no special-token text to parse: `parse_special` changes nothing.
std::vector<int> Llama2cTokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int> ids;
  ids.reserve(text.size() + 2);
  if (options.add_bos) ids.push_back(kBosId);
  if (!text.empty()) {
    if (auto it = piece_to_id_.find(absl::string_view(" ")); it != piece_to_id_.end()) {
      ids.push_back(it->second);
    }
  }
  // Code points as llama2.c splits them: a non-continuation byte starts one,
  // and at most 3 continuation bytes follow (malformed UTF-8 included).
  const int vocab = vocab_size();
  for (size_t i = 0; i < text.size();) {
    size_t j = i + 1;
    while (j < text.size() && (static_cast<uint8_t>(text[j]) & 0xC0) == 0x80 && j - i < 4) ++j;
    const std::string_view cp = text.substr(i, j - i);
    auto it = piece_to_id_.find(absl::string_view(cp.data(), cp.size()));
    if (it != piece_to_id_.end()) {
      ids.push_back(it->second);
    } else {
      for (char c : cp) {
        // Byte tokens are ids 3..258; a smaller vocabulary has none.
        const int id = static_cast<uint8_t>(c) + 3;
        ids.push_back(id < vocab ? id : kUnkId);
      }
    }
    i = j;
  }

  // BPE merges. llama2.c rescans every pair per merge (quadratic); this keeps
  // candidate pairs in a heap ordered the same way (score, then leftmost) over
  // a linked list, and drops entries whose symbols changed since the push.
  const int n = static_cast<int>(ids.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    float score;
    int left, right, left_id, right_id, merged_id;
  };
  auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower_priority)> heap(
      lower_priority);
  std::string buf;
  auto push_pair = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    const int right = next[left];
    const std::string& a = pieces_[ids[left]];
    const std::string& b = pieces_[ids[right]];
    if (a.size() + b.size() > static_cast<size_t>(max_token_length_)) return;
    buf.assign(a).append(b);
    auto it = piece_to_id_.find(buf);
    if (it == piece_to_id_.end()) return;
    const float score = scores_[it->second];
    if (!(score > kNoMergeScore)) return;  // Also rejects NaN, as llama2.c does.
    heap.push({score, left, right, ids[left], ids[right], it->second});
  };
  for (int i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    // Removed symbols have id -1, so a stale entry fails one of these.
    if (next[c.left] != c.right || ids[c.left] != c.left_id || ids[c.right] != c.right_id) {
      continue;
    }
    ids[c.left] = c.merged_id;
    ids[c.right] = -1;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    push_pair(prev[c.left]);
    push_pair(c.left);
  }
  std::vector<int> out;
  out.reserve(n);
  for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i]) out.push_back(ids[i]);
  return out;
}

std::string_view Llama2cTokenizer::DecodeToken(int prev_token, int token) const {
  // BOS and EOS are control tokens: no text (as SentencePiece decodes them;
  // llama2.c never prints them). They still count as `prev_token`.
  if (token < 0 || token >= vocab_size() || token == kBosId || token == kEosId) return {};
  std::string_view piece = pieces_[token];
  if (prev_token == kBosId && !piece.empty() && piece.front() == ' ') {
    piece.remove_prefix(1);
    if (std::optional<char> b = ParseBytePiece(piece)) {
      return {&AllBytes()[static_cast<uint8_t>(*b)], 1};
    }
    return piece;
  }
  if (!byte_piece_[token].empty()) return byte_piece_[token];
  return piece;
}

}  // namespace inferd

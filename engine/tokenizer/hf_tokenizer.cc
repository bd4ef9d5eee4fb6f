#include "engine/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/hf_decoder.h"
#include "engine/tokenizer/hf_json.h"
#include "engine/tokenizer/hf_normalizer.h"
#include "engine/tokenizer/hf_post_processor.h"
#include "engine/tokenizer/hf_pre_tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace inferd {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Text with every ill-formed byte as U+FFFD: the regexes and the normalizer
// need valid UTF-8 (the server only passes valid text; other callers may not).
std::string RepairUtf8(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    size_t n = 1;
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead >= 0xC2 && lead <= 0xDF) n = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) n = 3;
    else if (lead >= 0xF0 && lead <= 0xF4) n = 4;
    if (lead >= 0x80 && (n == 1 || i + n > text.size() || !IsValidUtf8(text.substr(i, n)))) {
      out.append(kReplacement);
      ++i;
      continue;
    }
    out.append(text.substr(i, n));
    i += n;
  }
  return out;
}

class HfTokenizer : public Tokenizer {
 public:
  using Tokenizer::Encode;

  std::vector<int> Encode(std::string_view text, const EncodeOptions& options) const override {
    std::string repaired;
    if (!IsValidUtf8(text)) {
      repaired = RepairUtf8(text);
      text = repaired;
    }
    std::vector<int> ids;
    ids.reserve(text.size() / 3 + 4);
    if (options.add_bos) {
      if (!post_processor_.prefix_ids.empty()) {
        ids = post_processor_.prefix_ids;
      } else if (bos_id_ >= 0) {
        ids.push_back(bos_id_);
      }
    }
    const AddedTokenMatcher& raw = options.parse_special ? raw_all_ : raw_non_special_;
    const AddedTokenMatcher& normalized = options.parse_special ? normalized_all_ : normalized_non_special_;
    bool first_section = true;
    std::vector<std::string> words;
    raw.Split(
        text,
        [&](std::string_view section) {
          std::string norm = normalizer_ ? normalizer_->Normalize(std::string(section)) : std::string(section);
          normalized.Split(
              norm,
              [&](std::string_view part) {
                words.clear();
                words.emplace_back(part);
                if (pre_tokenizer_) pre_tokenizer_->PreTokenize(&words, first_section);
                for (const std::string& w : words) model_.EncodeWord(w, &ids);
              },
              [&](int id) { ids.push_back(id); });
          first_section = false;
        },
        [&](int id) {
          ids.push_back(id);
          first_section = false;
        });
    return ids;
  }

  bool AddsBosByDefault() const override { return adds_bos_; }

  std::string_view DecodeToken(int prev_token, int token) const override {
    if (token < 0 || token >= vocab_size() || special_[token]) return {};
    std::string_view text = decoded_[token];
    const bool at_start = prev_token < 0 || (prev_token < vocab_size() && special_[prev_token]);
    if (at_start) {
      for (int i = 0; i < decoder_.strip_start() && !text.empty() && text.front() == decoder_.strip_char(); ++i) {
        text.remove_prefix(1);
      }
    }
    return text;
  }

  bool IsSpecial(int id) const override { return id >= 0 && id < vocab_size() && special_[id]; }
  bool CleansUpSpaces() const override { return clean_up_spaces_; }
  const std::string& Piece(int id) const override { return pieces_[id]; }
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }

  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Build(const nlohmann::json& json, const nlohmann::json& config,
                                                            const std::string& json_name,
                                                            const std::string& config_name);

 private:
  HfTokenizer(BpeModel model, HfDecoder decoder) : model_(std::move(model)), decoder_(std::move(decoder)) {}

  absl::Status ReadAddedTokens(const nlohmann::json& json, const nlohmann::json& config);
  absl::Status ReadConfig(const nlohmann::json& config);

  std::unique_ptr<HfNormalizer> normalizer_;
  std::unique_ptr<HfPreTokenizer> pre_tokenizer_;
  BpeModel model_;
  HfPostProcessor post_processor_;
  HfDecoder decoder_;
  std::vector<AddedToken> added_;
  // Added tokens looked for in the raw text / in normalized sections, with
  // and without the special ones (EncodeOptions::parse_special).
  AddedTokenMatcher raw_all_, raw_non_special_, normalized_all_, normalized_non_special_;
  std::vector<std::string> pieces_;   // by id: the model's pieces, then added contents
  std::vector<std::string> decoded_;  // by id: the decoder's bytes
  std::vector<bool> special_;
  int bos_id_ = -1;
  int eos_id_ = -1;
  bool adds_bos_ = false;
  bool clean_up_spaces_ = true;
};

absl::Status HfTokenizer::ReadAddedTokens(const nlohmann::json& json, const nlohmann::json& config) {
  if (json.contains("added_tokens") && !json["added_tokens"].is_null()) {
    if (!json["added_tokens"].is_array()) return absl::InvalidArgumentError("added_tokens: expected an array");
    for (size_t i = 0; i < json["added_tokens"].size(); ++i) {
      const nlohmann::json& t = json["added_tokens"][i];
      const std::string path = absl::StrCat("added_tokens[", i, "]");
      AddedToken token;
      if (!t.contains("id") || !t["id"].is_number_integer() || t["id"].get<int64_t>() < 0 ||
          t["id"].get<int64_t>() >= kMaxTokenId) {
        return absl::InvalidArgumentError(absl::StrCat(path, ".id: expected an id in [0, ", kMaxTokenId, ")"));
      }
      token.id = t["id"].get<int>();
      absl::StatusOr<std::string> content = JsonString(t, "content", path);
      if (!content.ok()) return content.status();
      token.content = *content;
      for (auto [key, field] : {std::pair{"special", &token.special}, std::pair{"lstrip", &token.lstrip},
                                std::pair{"rstrip", &token.rstrip}, std::pair{"single_word", &token.single_word},
                                std::pair{"normalized", &token.normalized}}) {
        absl::StatusOr<bool> value = JsonBool(t, key, path, false);
        if (!value.ok()) return value.status();
        *field = *value;
      }
      added_.push_back(std::move(token));
    }
  }
  // transformers also treats additional_special_tokens as special.
  absl::flat_hash_set<std::string> extra_special;
  if (config.is_object() && config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array()) {
    for (const nlohmann::json& t : config["additional_special_tokens"]) {
      if (t.is_string()) extra_special.insert(t.get<std::string>());
      if (t.is_object() && t.contains("content") && t["content"].is_string()) {
        extra_special.insert(t["content"].get<std::string>());
      }
    }
  }
  for (AddedToken& t : added_) t.special |= extra_special.contains(t.content);

  auto normalized_content = [this](const AddedToken& t) {
    return normalizer_ ? normalizer_->Normalize(t.content) : t.content;
  };
  auto raw_content = [](const AddedToken& t) { return t.content; };
  const bool has_normalizer = normalizer_ != nullptr;
  auto is_raw = [has_normalizer](const AddedToken& t) { return !t.normalized || !has_normalizer; };
  struct Spec {
    AddedTokenMatcher* out;
    bool raw;
    bool with_special;
  };
  for (const Spec& spec : {Spec{&raw_all_, true, true}, Spec{&raw_non_special_, true, false},
                           Spec{&normalized_all_, false, true}, Spec{&normalized_non_special_, false, false}}) {
    absl::StatusOr<AddedTokenMatcher> m = AddedTokenMatcher::Build(
        added_,
        [&](const AddedToken& t) { return is_raw(t) == spec.raw && (spec.with_special || !t.special); },
        spec.raw ? std::function<std::string(const AddedToken&)>(raw_content)
                 : std::function<std::string(const AddedToken&)>(normalized_content));
    if (!m.ok()) return m.status();
    *spec.out = *std::move(m);
  }
  return absl::OkStatus();
}

// A token named in tokenizer_config.json: "<s>" or {"content": "<s>", ...}.
std::optional<std::string> ConfigTokenText(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

absl::Status HfTokenizer::ReadConfig(const nlohmann::json& config) {
  auto id_of = [this](const std::string& text) -> int {
    for (const AddedToken& t : added_) {
      if (t.content == text) return t.id;
    }
    return model_.TokenId(text);
  };
  for (auto [key, out] : {std::pair{"bos_token", &bos_id_}, std::pair{"eos_token", &eos_id_}}) {
    if (std::optional<std::string> text = ConfigTokenText(config, key)) {
      *out = id_of(*text);
      if (*out < 0) return absl::InvalidArgumentError(absl::StrCat(key, ": \"", *text, "\" is not a token"));
    }
  }
  if (bos_id_ < 0 && post_processor_.prefix_ids.size() == 1) bos_id_ = post_processor_.prefix_ids[0];
  absl::StatusOr<bool> add_bos = JsonBool(config, "add_bos_token", "", !post_processor_.prefix_ids.empty());
  if (!add_bos.ok()) return absl::InvalidArgumentError("add_bos_token: expected true or false");
  adds_bos_ = *add_bos && (bos_id_ >= 0 || !post_processor_.prefix_ids.empty());
  // transformers' and tokenizers.js's default when the key is absent.
  absl::StatusOr<bool> clean_up = JsonBool(config, "clean_up_tokenization_spaces", "", true);
  if (!clean_up.ok()) return absl::InvalidArgumentError("clean_up_tokenization_spaces: expected true or false");
  clean_up_spaces_ = *clean_up;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Build(const nlohmann::json& json,
                                                                const nlohmann::json& config,
                                                                const std::string& json_name,
                                                                const std::string& config_name) {
  auto in_json = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(json_name, ": ", s.message()));
  };
  if (!json.is_object()) return in_json(absl::InvalidArgumentError("expected a JSON object"));
  if (!config.is_null() && !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_name, ": expected a JSON object"));
  }
  if (!json.contains("model")) return in_json(absl::InvalidArgumentError("model: missing"));
  absl::StatusOr<BpeModel> model = BpeModel::FromJson(json["model"], "model");
  if (!model.ok()) return in_json(model.status());
  const nlohmann::json null;
  absl::StatusOr<HfDecoder> decoder = HfDecoder::FromJson(json.value("decoder", null), "decoder");
  if (!decoder.ok()) return in_json(decoder.status());
  std::unique_ptr<HfTokenizer> tok(new HfTokenizer(*std::move(model), *std::move(decoder)));

  absl::StatusOr<std::unique_ptr<HfNormalizer>> normalizer = MakeHfNormalizer(json.value("normalizer", null),
                                                                              "normalizer");
  if (!normalizer.ok()) return in_json(normalizer.status());
  tok->normalizer_ = *std::move(normalizer);
  absl::StatusOr<std::unique_ptr<HfPreTokenizer>> pre = MakeHfPreTokenizer(json.value("pre_tokenizer", null),
                                                                           "pre_tokenizer");
  if (!pre.ok()) return in_json(pre.status());
  tok->pre_tokenizer_ = *std::move(pre);
  absl::StatusOr<HfPostProcessor> post = ReadHfPostProcessor(json.value("post_processor", null), "post_processor");
  if (!post.ok()) return in_json(post.status());
  tok->post_processor_ = *std::move(post);
  if (absl::Status s = tok->ReadAddedTokens(json, config); !s.ok()) return in_json(s);
  if (absl::Status s = tok->ReadConfig(config); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(config_name, ": ", s.message()));
  }

  // The id space: the model's vocabulary, then added tokens (which may
  // replace an entry of it, as Hugging Face's added vocabulary does).
  tok->pieces_ = tok->model_.pieces();
  for (const AddedToken& t : tok->added_) {
    if (static_cast<size_t>(t.id) >= tok->pieces_.size()) tok->pieces_.resize(t.id + 1);
  }
  const int n = static_cast<int>(tok->pieces_.size());
  for (int id : tok->post_processor_.prefix_ids) {
    if (id >= n) {
      return in_json(absl::InvalidArgumentError(absl::StrCat("post_processor: id ", id, " is outside the vocabulary")));
    }
  }
  tok->special_.assign(n, false);
  std::vector<bool> added(n, false);
  for (const AddedToken& t : tok->added_) {
    tok->pieces_[t.id] = t.content;
    tok->special_[t.id] = t.special;
    added[t.id] = true;
  }
  tok->decoded_.resize(n);
  for (int id = 0; id < n; ++id) tok->decoded_[id] = tok->decoder_.DecodePiece(tok->pieces_[id], added[id]);
  return tok;
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  return doc;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> HfTokenizerFromJson(const nlohmann::json& tokenizer_json,
                                                               const nlohmann::json& tokenizer_config) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok =
      HfTokenizer::Build(tokenizer_json, tokenizer_config, "tokenizer.json", "tokenizer_config.json");
  if (!tok.ok()) return tok.status();
  return std::unique_ptr<Tokenizer>(*std::move(tok));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& tokenizer_json_path,
                                                           const std::string& tokenizer_config_path) {
  absl::StatusOr<nlohmann::json> json = ReadJsonFile(tokenizer_json_path);
  if (!json.ok()) return json.status();
  nlohmann::json config;
  if (!tokenizer_config_path.empty()) {
    absl::StatusOr<nlohmann::json> c = ReadJsonFile(tokenizer_config_path);
    if (!c.ok()) return c.status();
    config = *std::move(c);
  }
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok =
      HfTokenizer::Build(*json, config, tokenizer_json_path, tokenizer_config_path);
  if (!tok.ok()) return tok.status();
  return std::unique_ptr<Tokenizer>(*std::move(tok));
}

}  // namespace inferd

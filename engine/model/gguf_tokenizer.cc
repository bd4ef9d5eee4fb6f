// The tokenizer a GGUF file carries in its tokenizer.ggml.* metadata.
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/model/gguf_model.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/llama2c_tokenizer.h"

namespace inferd {
namespace {

// llama.cpp's token types (llama_token_type).
constexpr int kTokenControl = 3;
constexpr int kTokenUserDefined = 4;

// The Split regexes of the byte-level BPE families, by tokenizer.ggml.pre,
// as their tokenizer.json files write them.
const char* PreTokenizerRegex(const std::string& pre) {
  if (pre == "llama-bpe" || pre == "llama3") {
    return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
           "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  }
  if (pre == "qwen2") {
    return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
           "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  }
  if (pre == "gpt2" || pre == "default" || pre.empty()) {
    return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  }
  return nullptr;
}

// The tokenizer.ggml.* metadata of one file, and its errors.
class TokenizerMetadata {
 public:
  explicit TokenizerMetadata(const GgufFile& f) : f_(f) {}
  // The value of `key`, or null when the file has none.
  const nlohmann::json* find(const std::string& key) const {
    auto it = f_.metadata().find(key);
    return it == f_.metadata().end() ? nullptr : &it->second;
  }
  // An integer id, or -1 when absent.
  int id_of(const std::string& key) const {
    const nlohmann::json* v = find(key);
    return v != nullptr && v->is_number_integer() ? v->get<int>() : -1;
  }
  absl::Status bad(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tokenizer metadata: ", what));
  }

 private:
  const GgufFile& f_;
};

}  // namespace

absl::StatusOr<std::pair<nlohmann::json, nlohmann::json>> Gpt2TokenizerJson(const GgufFile& f) {
  const TokenizerMetadata meta(f);
  auto find = [&meta](const std::string& key) { return meta.find(key); };
  auto bad = [&meta](const std::string& what) { return meta.bad(what); };
  const nlohmann::json* tokens = find("tokenizer.ggml.tokens");
  if (tokens == nullptr || !tokens->is_array()) return bad("tokenizer.ggml.tokens is missing");
  const nlohmann::json* merges = find("tokenizer.ggml.merges");
  if (merges == nullptr || !merges->is_array()) return bad("tokenizer.ggml.merges is missing");
  const nlohmann::json* pre_json = find("tokenizer.ggml.pre");
  const std::string pre = pre_json != nullptr && pre_json->is_string() ? pre_json->get<std::string>() : "";
  const char* regex = PreTokenizerRegex(pre);
  if (regex == nullptr) {
    return bad(absl::StrCat("tokenizer.ggml.pre \"", pre, "\" is not supported (llama-bpe, qwen2, gpt2)"));
  }
  const nlohmann::json* types = find("tokenizer.ggml.token_type");
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (size_t id = 0; id < tokens->size(); ++id) {
    const nlohmann::json& piece = (*tokens)[id];
    if (!piece.is_string()) return bad("tokenizer.ggml.tokens must be strings");
    vocab[piece.get<std::string>()] = id;
    const int type = types != nullptr && types->is_array() && id < types->size() && (*types)[id].is_number_integer()
                         ? (*types)[id].get<int>()
                         : 1;
    if (type == kTokenControl || type == kTokenUserDefined) {
      added.push_back({{"id", id}, {"content", piece}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", type == kTokenUserDefined},
                       {"special", type == kTokenControl}});
    }
  }
  nlohmann::json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
        // llama.cpp's llama-bpe pre-tokenizer is Llama 3's, which sets it.
        {"ignore_merges", pre == "llama-bpe" || pre == "llama3"}, {"vocab", vocab}, {"merges", *merges}}}};
  const nlohmann::json* add_bos = find("tokenizer.ggml.add_bos_token");
  nlohmann::json config = {{"add_bos_token", add_bos != nullptr && add_bos->is_boolean() && add_bos->get<bool>()},
                           {"add_eos_token", false}};
  const int64_t bos = meta.id_of("tokenizer.ggml.bos_token_id"), eos = meta.id_of("tokenizer.ggml.eos_token_id");
  if (bos >= 0 && static_cast<size_t>(bos) < tokens->size()) config["bos_token"] = (*tokens)[bos];
  if (eos >= 0 && static_cast<size_t>(eos) < tokens->size()) config["eos_token"] = (*tokens)[eos];
  return std::make_pair(std::move(tokenizer), std::move(config));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const GgufFile& f) {
  const TokenizerMetadata meta(f);
  auto find = [&meta](const std::string& key) { return meta.find(key); };
  auto bad = [&meta](const std::string& what) { return meta.bad(what); };
  const nlohmann::json* model = find("tokenizer.ggml.model");
  const nlohmann::json* tokens = find("tokenizer.ggml.tokens");
  if (model == nullptr || !model->is_string() || tokens == nullptr || !tokens->is_array()) {
    return bad("tokenizer.ggml.model or tokenizer.ggml.tokens is missing (no tokenizer in this file; pass --tokenizer)");
  }
  std::vector<std::string> pieces;
  pieces.reserve(tokens->size());
  for (const nlohmann::json& t : *tokens) {
    if (!t.is_string()) return bad("tokenizer.ggml.tokens must be strings");
    pieces.push_back(t.get<std::string>());
  }
  const nlohmann::json* add_bos_json = find("tokenizer.ggml.add_bos_token");
  const int bos = meta.id_of("tokenizer.ggml.bos_token_id"), eos = meta.id_of("tokenizer.ggml.eos_token_id");

  if (*model == "llama") {
    const nlohmann::json* scores = find("tokenizer.ggml.scores");
    if (scores == nullptr || !scores->is_array() || scores->size() != pieces.size()) {
      return bad("tokenizer.ggml.scores must list one score per token");
    }
    if (bos != Llama2cTokenizer::kBosId || eos != Llama2cTokenizer::kEosId || pieces.size() < 3) {
      return bad(absl::StrCat("the llama tokenizer needs <unk>, BOS, EOS at ids 0, 1, 2 (bos_token_id ", bos,
                              ", eos_token_id ", eos, ")"));
    }
    std::vector<float> score_values;
    for (const nlohmann::json& s : *scores) {
      if (!s.is_number()) return bad("tokenizer.ggml.scores must be numbers");
      score_values.push_back(s.get<float>());
    }
    for (std::string& p : pieces) p = absl::StrReplaceAll(p, {{"\xE2\x96\x81", " "}});  // U+2581
    const bool add_bos = add_bos_json == nullptr || !add_bos_json->is_boolean() || add_bos_json->get<bool>();
    absl::StatusOr<Llama2cTokenizer> tok =
        Llama2cTokenizer::FromVocab(std::move(pieces), std::move(score_values), add_bos);
    if (!tok.ok()) return bad(std::string(tok.status().message()));
    return std::unique_ptr<Tokenizer>(new Llama2cTokenizer(*std::move(tok)));
  }
  if (*model == "gpt2") {
    absl::StatusOr<std::pair<nlohmann::json, nlohmann::json>> docs = Gpt2TokenizerJson(f);
    if (!docs.ok()) return docs.status();
    return HfTokenizerFromJson(docs->first, docs->second);
  }
  return bad(absl::StrCat("tokenizer.ggml.model \"", model->get<std::string>(), "\" is not supported (llama, gpt2)"));
}

}  // namespace inferd

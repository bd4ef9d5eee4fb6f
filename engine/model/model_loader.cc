#include "engine/model/model_loader.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/dummy_weights.h"
#include "engine/model/gguf_file.h"
#include "engine/model/gguf_model.h"
#include "engine/model/hf_model.h"
#include "engine/model/llama2c_checkpoint.h"
#include "engine/model/weight_conversion.h"
#include "engine/memory_budget.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/llama2c_tokenizer.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"

namespace inferd {
namespace {

namespace fs = std::filesystem;

constexpr char kDummyPrefix[] = "dummy:";
constexpr uint32_t kAk42Magic = 0x616b3432;
// The Llama 2 tokenizer that generated models borrow.
constexpr int kLlama2TokenizerVocab = 32000;

bool IsTokenizerName(const std::string& filename) {
  return filename == "tokenizer.bin" ||
         (absl::StartsWith(filename, "tok") && absl::EndsWith(filename, ".bin"));
}

bool IsInt8Checkpoint(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  uint32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  return in && magic == kAk42Magic;
}

// The one model file of a directory: `*.bin` that is no tokenizer, the fp32
// checkpoint when an int8 export of it sits beside it.
absl::StatusOr<fs::path> FindWeights(const fs::path& dir) {
  std::vector<fs::path> fp32, int8;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const fs::path& p = entry.path();
    std::error_code entry_ec;  // an unreadable entry is skipped, not fatal
    if (!entry.is_regular_file(entry_ec) || p.extension() != ".bin" ||
        IsTokenizerName(p.filename().string())) {
      continue;
    }
    (IsInt8Checkpoint(p) ? int8 : fp32).push_back(p);
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat(dir.string(), ": cannot list: ", ec.message()));
  }
  const std::vector<fs::path>& pick = fp32.empty() ? int8 : fp32;
  if (pick.empty()) {
    return absl::NotFoundError(absl::StrCat(
        dir.string(), ": no model file (looked for a llama2.c *.bin checkpoint that is not "
                      "tokenizer.bin or tok*.bin)"));
  }
  if (pick.size() > 1) {
    std::vector<std::string> names;
    for (const fs::path& p : pick) names.push_back(p.filename().string());
    std::sort(names.begin(), names.end());
    return absl::InvalidArgumentError(absl::StrCat(
        dir.string(), ": several model files (", absl::StrJoin(names, ", "),
        "); pass the path of the one to load"));
  }
  return pick.front();
}

// The tokenizer beside the weights: tokenizer.bin, else the single tok*.bin.
absl::StatusOr<fs::path> FindTokenizer(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir / "tokenizer.bin", ec)) return dir / "tokenizer.bin";
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code entry_ec;
    if (entry.is_regular_file(entry_ec) && IsTokenizerName(name)) names.push_back(name);
  }
  if (names.empty()) {
    return absl::NotFoundError(absl::StrCat(
        dir.string(), ": no tokenizer (looked for tokenizer.bin or tok*.bin); pass one "
                      "explicitly"));
  }
  if (names.size() > 1) {
    std::sort(names.begin(), names.end());
    return absl::InvalidArgumentError(absl::StrCat(dir.string(), ": several tokenizers (",
                                                   absl::StrJoin(names, ", "),
                                                   "); pass one explicitly"));
  }
  return dir / names.front();
}

absl::StatusOr<std::shared_ptr<const Tokenizer>> LoadTokenizer(const std::string& path,
                                                               int vocab_size,
                                                               const std::string& model) {
  absl::StatusOr<Llama2cTokenizer> tokenizer = Llama2cTokenizer::Load(path, vocab_size);
  if (!tokenizer.ok()) {
    // The tokenizer's own message names its file; say which model it was
    // meant for, since a vocabulary mismatch is a pairing mistake.
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(tokenizer.status().message(), " (tokenizer for model ",
                                     model, ", vocab_size ", vocab_size, ")"));
  }
  return std::make_shared<const Llama2cTokenizer>(*std::move(tokenizer));
}

absl::StatusOr<LoadedModel> LoadDummy(const std::string& preset, const LoadOptions& options) {
  const std::string& tokenizer_path = options.tokenizer_path;
  absl::StatusOr<ModelConfig> config = DummyPresetConfig(preset);
  if (!config.ok()) return config.status();
  if (options.max_model_len > config->max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("--max-model-len ", options.max_model_len, " exceeds ",
                                                   config->name, "'s context of ", config->max_seq_len));
  }
  if (options.max_model_len > 0) config->max_seq_len = options.max_model_len;
  // Generated weights have no tokenizer of their own: `tiny` borrows
  // stories260K's, the others Llama 2's (ids beyond 32000 decode to "").
  const bool tiny = config->vocab_size <= 512;
  const std::string path =
      !tokenizer_path.empty() ? tokenizer_path
      : tiny                  ? ModelsDir() + "/stories260K/tok512.bin"
                              : ModelsDir() + "/llama2-tokenizer/tokenizer.bin";
  const int vocab = std::min(config->vocab_size, kLlama2TokenizerVocab);
  // The tokenizer first: it is cheap, generating weights is not.
  absl::StatusOr<std::shared_ptr<const Tokenizer>> tokenizer =
      LoadTokenizer(path, vocab, config->name);
  if (!tokenizer.ok()) return tokenizer.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights = MakeDummyWeights(*config, /*seed=*/0, options.num_threads);
  if (!weights.ok()) return weights.status();
  return LoadedModel{std::shared_ptr<const ModelWeights>(*std::move(weights)),
                     *std::move(tokenizer)};
}

constexpr char kExpected[] =
    "expected a Hugging Face model directory (config.json + model.safetensors), a .gguf file, or a llama2.c "
    ".bin checkpoint or a directory holding one";

bool IsGguf(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return (in && std::memcmp(magic, "GGUF", 4) == 0) || path.extension() == ".gguf";
}

bool HasLlama2cFiles(const fs::path& dir) {
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".bin") return true;
  }
  return false;
}

// Caps the context and checks a tokenizer pairs with the weights.
absl::StatusOr<LoadedModel> Finish(std::unique_ptr<ModelWeights> weights, std::unique_ptr<Tokenizer> tokenizer,
                                   const std::string& where) {
  if (tokenizer->vocab_size() > weights->config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": the tokenizer has ", tokenizer->vocab_size(),
                                                   " tokens but the model's vocabulary only ",
                                                   weights->config.vocab_size));
  }
  return LoadedModel{std::shared_ptr<const ModelWeights>(std::move(weights)),
                     std::shared_ptr<const Tokenizer>(std::move(tokenizer))};
}

// An explicit --tokenizer: tokenizer.json, a SentencePiece .model, or a
// llama2.c tokenizer.bin.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFile(const std::string& path, int vocab_size) {
  const fs::path p(path);
  if (p.extension() == ".json") {
    const fs::path config = p.parent_path() / "tokenizer_config.json";
    std::error_code ec;
    return LoadHfTokenizer(path, fs::is_regular_file(config, ec) ? config.string() : "");
  }
  if (p.extension() == ".model") return LoadSentencePieceModel(path);
  absl::StatusOr<Llama2cTokenizer> tok = Llama2cTokenizer::Load(path, vocab_size);
  if (!tok.ok()) return tok.status();
  return std::unique_ptr<Tokenizer>(new Llama2cTokenizer(*std::move(tok)));
}

absl::StatusOr<LoadedModel> LoadHf(const std::string& dir, const LoadOptions& options) {
  const fs::path d(dir);
  std::error_code ec;
  fs::path tokenizer_file;
  if (!options.tokenizer_path.empty()) {
    tokenizer_file = options.tokenizer_path;
  } else if (fs::is_regular_file(d / "tokenizer.json", ec)) {
    tokenizer_file = d / "tokenizer.json";
  } else if (fs::is_regular_file(d / "tokenizer.model", ec)) {
    tokenizer_file = d / "tokenizer.model";
  } else {
    return absl::NotFoundError(absl::StrCat(
        dir, ": a Hugging Face model directory without a tokenizer (expected tokenizer.json or tokenizer.model)"));
  }
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights = LoadHfModel(dir, options.max_model_len, options.kv_pool_bytes);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      LoadTokenizerFile(tokenizer_file.string(), (*weights)->config.vocab_size);
  if (!tok.ok()) return tok.status();
  return Finish(*std::move(weights), *std::move(tok), dir);
}

absl::StatusOr<LoadedModel> LoadGguf(const std::string& path, const LoadOptions& options) {
  absl::StatusOr<GgufFile> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      LoadGgufWeights(*file, options.max_model_len, options.kv_pool_bytes);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      options.tokenizer_path.empty() ? LoadGgufTokenizer(*file)
                                     : LoadTokenizerFile(options.tokenizer_path, (*weights)->config.vocab_size);
  if (!tok.ok()) return tok.status();
  return Finish(*std::move(weights), *std::move(tok), path);
}

}  // namespace

std::string ModelsDir() {
  const char* env = std::getenv("INFERD_MODELS_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  return INFERD_DEFAULT_MODELS_DIR;
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& model, const std::string& tokenizer_path) {
  return LoadModel(model, LoadOptions{.tokenizer_path = tokenizer_path});
}

namespace {

absl::StatusOr<LoadedModel> LoadAsStored(const std::string& model, const LoadOptions& options) {
  const std::string& tokenizer_path = options.tokenizer_path;
  if (absl::StartsWith(model, kDummyPrefix)) {
    return LoadDummy(model.substr(std::strlen(kDummyPrefix)), options);
  }
  const fs::path path(model);
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat(model, ": model not found (", kExpected, ", or dummy:PRESET with PRESET one of ",
                                            absl::StrJoin(DummyPresetNames(), ", "), ")"));
  }
  if (fs::is_directory(status) && IsHfModelDirectory(model)) return LoadHf(model, options);
  if (fs::is_regular_file(status) && IsGguf(path)) return LoadGguf(model, options);
  if (fs::is_directory(status) && !HasLlama2cFiles(path)) {
    return absl::NotFoundError(absl::StrCat(model, ": a directory without a model (", kExpected, ")"));
  }
  if (fs::is_regular_file(status) && path.extension() != ".bin") {
    return absl::InvalidArgumentError(absl::StrCat(model, ": not a model file (", kExpected, ")"));
  }
  fs::path weights_path = path;
  if (fs::is_directory(status)) {
    absl::StatusOr<fs::path> found = FindWeights(path);
    if (!found.ok()) return found.status();
    weights_path = *found;
  }
  fs::path tokenizer = tokenizer_path;
  if (tokenizer.empty()) {
    fs::path dir = weights_path.parent_path();
    absl::StatusOr<fs::path> found = FindTokenizer(dir.empty() ? fs::path(".") : dir);
    if (!found.ok()) return found.status();
    tokenizer = *found;
  }

  {
    // int8 exports are widened to fp32 (4 bytes per 1-byte weight) at load.
    const int64_t file_bytes = static_cast<int64_t>(fs::file_size(weights_path, ec));
    const int64_t held_bytes = IsInt8Checkpoint(weights_path) ? 4 * file_bytes : file_bytes;
    absl::Status fits = CheckModelFitsInMemory(weights_path.string(), ec ? 0 : held_bytes, options.kv_pool_bytes);
    if (!fits.ok()) return fits;
  }
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      LoadLlama2cModel(weights_path.string());
  if (!weights.ok()) return weights.status();
  ModelConfig& config = (*weights)->config;
  if (options.max_model_len > config.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("--max-model-len ", options.max_model_len, " exceeds ",
                                                   weights_path.string(), "'s context of ", config.max_seq_len));
  }
  if (options.max_model_len > 0) config.max_seq_len = options.max_model_len;
  absl::StatusOr<std::shared_ptr<const Tokenizer>> tok =
      LoadTokenizer(tokenizer.string(), config.vocab_size, weights_path.string());
  if (!tok.ok()) return tok.status();
  return LoadedModel{std::shared_ptr<const ModelWeights>(*std::move(weights)), *std::move(tok)};
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModel(const std::string& model, const LoadOptions& options) {
  absl::StatusOr<LoadedModel> loaded = LoadAsStored(model, options);
  if (!loaded.ok() || !options.dtype.has_value()) return loaded;
  absl::StatusOr<ConvertedWeights> converted =
      ConvertWeights(std::move(loaded->weights), *options.dtype, options.num_threads);
  if (!converted.ok()) return absl::Status(converted.status().code(), absl::StrCat(model, ": ", converted.status().message()));
  loaded->weights = std::move(converted->weights);
  loaded->conversion_note = std::move(converted->note);
  return loaded;
}

}  // namespace inferd

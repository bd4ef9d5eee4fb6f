// Encoding 1 MB of mixed-language text (English prose, code, CJK, Cyrillic,
// Arabic, emoji, numbers: the reference corpus, repeated) on one core, with
// each real tokenizer. The target is under 1 s per MB.
#include <benchmark/benchmark.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"

namespace inferd {
namespace {

constexpr size_t kTextBytes = 1 << 20;

const std::string& MixedText() {
  static const std::string* text = [] {
    std::ifstream in(std::string(INFERD_SOURCE_DIR) + "/tests/tokenizer_reference/corpus.json");
    const auto corpus = nlohmann::json::parse(in).get<std::vector<std::string>>();
    auto* out = new std::string;
    while (out->size() < kTextBytes) {
      for (const std::string& s : corpus) {
        // Special-token text is rare in real prompts; leave it out.
        if (s.find('<') != std::string::npos) continue;
        *out += s;
        *out += '\n';
      }
    }
    out->resize(kTextBytes);
    // Cut back to a character boundary.
    while ((static_cast<unsigned char>(out->back()) & 0xC0) == 0x80) out->pop_back();
    if (static_cast<unsigned char>(out->back()) >= 0xC0) out->pop_back();
    return out;
  }();
  return *text;
}

void Run(benchmark::State& state, const Tokenizer& tok) {
  const std::string& text = MixedText();
  size_t tokens = 0;
  for (auto _ : state) {
    std::vector<int> ids = tok.Encode(text, false);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
}

void BM_HfTokenizer(benchmark::State& state, const std::string& name) {
  const std::string dir = std::string(INFERD_SHARED_DIR) + "/models/tokenizers/" + name;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      LoadHfTokenizer(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
  if (!tok.ok()) {
    state.SkipWithError(std::string(tok.status().message()).c_str());
    return;
  }
  Run(state, **tok);
}

void BM_SentencePiece(benchmark::State& state) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      LoadSentencePieceModel(std::string(INFERD_SHARED_DIR) + "/models/llama2-tokenizer/tokenizer.model");
  if (!tok.ok()) {
    state.SkipWithError(std::string(tok.status().message()).c_str());
    return;
  }
  Run(state, **tok);
}

void BM_LoadHfTokenizer(benchmark::State& state, const std::string& name) {
  const std::string dir = std::string(INFERD_SHARED_DIR) + "/models/tokenizers/" + name;
  for (auto _ : state) {
    auto tok = LoadHfTokenizer(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
    benchmark::DoNotOptimize(tok);
  }
}

BENCHMARK_CAPTURE(BM_HfTokenizer, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_HfTokenizer, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_HfTokenizer, spm_bpe_32k, std::string("spm-bpe-32k"))->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SentencePiece)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LoadHfTokenizer, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace inferd

BENCHMARK_MAIN();

// The CPU backend's forward pass (engine only: no scheduler, no server) on
// dummy:llama-110m: one decode step at batch 1, 8 and 32 and the prefill of a
// 512-token prompt, per weight type: the ceiling for what the server can
// generate per second on this machine.
//
//   forward_benchmark [--dtype=float32,float16,bfloat16,q8_0] [--kv-cache-dtype=auto|float32|float16]
//                     [--cpu-threads=N] [benchmark flags]
//
// The weights are generated once in float32 and converted per dtype as
// `--dtype` converts them at load. Decode steps read a cache prefilled with
// real tokens (32 prompts per dtype, a few seconds before the first one).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/dummy_weights.h"
#include "engine/model/weight_conversion.h"

namespace inferd {
namespace {

constexpr char kPreset[] = "llama-110m";
constexpr int kBlockSize = 16;
// Tokens already in each sequence's cache: attention reads this many per
// decode token. 192 is the mean context of a decode step in `make bench`'s
// served scenario (128-token prompts, 128 output tokens), so the served step
// is compared with a bare step of the same work.
constexpr int kContextLen = 192;
constexpr int kPrefillLen = 512;

int g_threads = 0;
std::string g_kv_dtype = "auto";  // --kv-cache-dtype, checked when parsed

WeightType KvDtype(WeightType weights) { return *CpuBackend::ParseKvDtype(g_kv_dtype, weights); }

std::shared_ptr<const ModelWeights> F32Weights() {
  static const std::shared_ptr<const ModelWeights> weights = []() -> std::shared_ptr<const ModelWeights> {
    absl::StatusOr<ModelConfig> config = DummyPresetConfig(kPreset);
    if (!config.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(*config, /*seed=*/1);
    if (!w.ok()) return nullptr;
    return std::shared_ptr<const ModelWeights>(*std::move(w));
  }();
  return weights;
}

// One converted copy at a time: the float32 original plus one other type
// fit comfortably, four copies of a 110M model would not need to.
std::shared_ptr<const ModelWeights> Weights(WeightType type) {
  static WeightType held_type = WeightType::kF32;
  static std::shared_ptr<const ModelWeights> held;
  if (held != nullptr && held_type == type) return held;
  held.reset();
  if (F32Weights() == nullptr) return nullptr;
  absl::StatusOr<ConvertedWeights> converted = ConvertWeights(F32Weights(), type);
  if (!converted.ok()) return nullptr;
  if (!converted->note.empty()) std::fprintf(stderr, "%s\n", converted->note.c_str());
  held_type = type;
  held = converted->weights;
  return held;
}

constexpr int kMaxDecodeSeqs = 32;

int TokenAt(int i) { return 100 + (i * 37) % 1000; }

// Times Forward(batch) and reports tokens/s.
void TimeSteps(benchmark::State& state, CpuBackend& backend, const StepBatch& batch, int vocab_size) {
  std::vector<float> logits(batch.sequences.size() * static_cast<size_t>(vocab_size));
  for (auto _ : state) {
    const absl::Status status = backend.Forward(batch, absl::MakeSpan(logits));
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(batch.num_tokens() * state.iterations()),
                                                  benchmark::Counter::kIsRate);
  state.counters["threads"] = backend.num_threads();
}

// A backend per dtype (one at a time) whose cache holds kMaxDecodeSeqs
// sequences of kContextLen - 1 tokens, prefilled once, so that a decode step
// reads K/V rows that were written, as a served step does. (A cache that was
// never written reads the kernel's shared zero page: attention would cost no
// memory traffic at all.)
struct DecodeFixture {
  WeightType type;
  std::unique_ptr<CpuBackend> backend;
  std::vector<std::vector<int>> tables;
};

DecodeFixture* Decoder(WeightType type) {
  static std::unique_ptr<DecodeFixture> held;
  if (held != nullptr && held->type == type) return held.get();
  held.reset();
  const std::shared_ptr<const ModelWeights> weights = Weights(type);
  if (weights == nullptr) return nullptr;
  const int blocks_per_seq = (kContextLen + kBlockSize - 1) / kBlockSize;
  absl::StatusOr<std::unique_ptr<CpuBackend>> backend =
      CpuBackend::Create(weights, {.num_blocks = kMaxDecodeSeqs * blocks_per_seq, .block_size = kBlockSize},
                         g_threads, KvDtype(type));
  if (!backend.ok()) return nullptr;
  auto fixture = std::make_unique<DecodeFixture>(DecodeFixture{type, *std::move(backend), {}});
  std::fprintf(stderr, "prefilling %d sequences of %d tokens at %s\n", kMaxDecodeSeqs, kContextLen - 1,
               std::string(WeightTypeName(type)).c_str());
  std::vector<int> prompt(kContextLen - 1);
  std::vector<float> logits(weights->config.vocab_size);
  for (int s = 0; s < kMaxDecodeSeqs; ++s) {
    std::vector<int>& table = fixture->tables.emplace_back(blocks_per_seq);
    std::iota(table.begin(), table.end(), s * blocks_per_seq);
    for (int i = 0; i < kContextLen - 1; ++i) prompt[i] = TokenAt(i + s);
    StepBatch batch;
    batch.AddSequence(prompt, kContextLen - 1, table, /*need_logits=*/true);
    if (!fixture->backend->Forward(batch, absl::MakeSpan(logits)).ok()) return nullptr;
  }
  held = std::move(fixture);
  return held.get();
}

// One decode step of `num_seqs` sequences at context kContextLen.
void RunDecode(benchmark::State& state, WeightType type, int num_seqs) {
  DecodeFixture* fixture = Decoder(type);
  if (fixture == nullptr) {
    state.SkipWithError("cannot make and prefill a dummy:llama-110m backend");
    return;
  }
  StepBatch batch;
  std::vector<int> token(1);
  for (int s = 0; s < num_seqs; ++s) {
    token[0] = TokenAt(s);
    batch.AddSequence(token, kContextLen, fixture->tables[s], /*need_logits=*/true);
  }
  TimeSteps(state, *fixture->backend, batch, fixture->backend->config().vocab_size);
}

// The prefill of one kPrefillLen-token prompt into an empty cache.
void RunPrefill(benchmark::State& state, WeightType type) {
  const std::shared_ptr<const ModelWeights> weights = Weights(type);
  if (weights == nullptr) {
    state.SkipWithError("cannot make dummy:llama-110m weights");
    return;
  }
  const int blocks = (kPrefillLen + kBlockSize - 1) / kBlockSize;
  absl::StatusOr<std::unique_ptr<CpuBackend>> backend =
      CpuBackend::Create(weights, {.num_blocks = blocks, .block_size = kBlockSize}, g_threads, KvDtype(type));
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  std::vector<int> table(blocks), tokens(kPrefillLen);
  std::iota(table.begin(), table.end(), 0);
  for (int i = 0; i < kPrefillLen; ++i) tokens[i] = TokenAt(i);
  StepBatch batch;
  batch.AddSequence(tokens, kPrefillLen, table, /*need_logits=*/true);
  TimeSteps(state, **backend, batch, weights->config.vocab_size);
}

// Real time: the step runs on the pool's threads, so the main thread's CPU
// time says little.
void Register(WeightType type) {
  const std::string name(WeightTypeName(type));
  benchmark::RegisterBenchmark(("BM_DecodeStep/" + name).c_str(),
                               [type](benchmark::State& state) {
                                 RunDecode(state, type, static_cast<int>(state.range(0)));
                               })
      ->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
  benchmark::RegisterBenchmark(("BM_Prefill512/" + name).c_str(),
                               [type](benchmark::State& state) { RunPrefill(state, type); })
      ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
}

}  // namespace
}  // namespace inferd

int main(int argc, char** argv) {
  using inferd::WeightType;
  std::vector<WeightType> types = {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0};
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--dtype=", 8) == 0) {
      types.clear();
      for (absl::string_view name : absl::StrSplit(argv[i] + 8, ',')) {
        absl::StatusOr<std::optional<WeightType>> t = inferd::ParseWeightDtype(std::string(name));
        if (!t.ok() || !t->has_value()) {
          std::fprintf(stderr, "forward_benchmark: --dtype=%s: expected float32, float16, bfloat16 or q8_0\n",
                       std::string(name).c_str());
          return 2;
        }
        types.push_back(**t);
      }
    } else if (std::strncmp(argv[i], "--kv-cache-dtype=", 17) == 0) {
      inferd::g_kv_dtype = argv[i] + 17;
      if (absl::Status s = inferd::CpuBackend::ParseKvDtype(inferd::g_kv_dtype, WeightType::kF32).status(); !s.ok()) {
        std::fprintf(stderr, "forward_benchmark: %s\n", std::string(s.message()).c_str());
        return 2;
      }
    } else if (std::strncmp(argv[i], "--cpu-threads=", 14) == 0) {
      inferd::g_threads = std::atoi(argv[i] + 14);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  for (WeightType t : types) inferd::Register(t);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

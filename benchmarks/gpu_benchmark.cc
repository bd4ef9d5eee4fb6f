// CUDA backend benchmark at a realistic shape (dummy weights generated on the
// device, default dummy:llama3-8b in bfloat16): decode steps at several
// batch sizes over a 1K-token context (tokens/s, and the share of the
// memory bandwidth that the step's weight and KV bytes imply), and prefill
// of 512, 2K and 8K tokens (TFLOP/s against the bf16 matrix peak). Each number is
// the median of timed runs after warm-up, timed with CUDA events. Decode
// rows come twice: "decode" copies every logit row to the host, "greedy"
// only each row's device-selected candidate (Backend::ForwardCandidates).
// The bandwidth fraction is the model's own estimate (weights + KV bytes
// over the step time, against 4.3 TB/s) until a profiler says otherwise.
// Prints a table last and writes JSON.
//
//   gpu_benchmark [--preset llama3-8b] [--dtype bfloat16] [--context 1024]
//                 [--batches 1,32,256] [--prefill 512,2048,8192] [--reps 10]
//                 [--json PATH]  (default: $OUT/gpu_benchmark.json when OUT is set)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cuda/cuda_backend.h"
#include "engine/model/dummy_weights.h"

namespace inferd {
namespace {

// Ceilings of one H200 as measured on these machines (device KINDS.md): a
// device-to-device copy at ~4.3 TB/s, a bf16 8192^3 product at ~790 TFLOP/s.
constexpr double kPeakBytesPerSecond = 4.3e12;
constexpr double kPeakFlops = 790e12;

struct Args {
  std::string preset = "llama3-8b";
  std::string dtype = "bfloat16";
  int context = 1024;
  std::vector<int> batches = {1, 32, 256};
  std::vector<int> prefills = {512, 2048, 8192};
  int reps = 10;
  int warmup = 3;
  std::string json;
};

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "gpu_benchmark: %s\n", message.c_str());
  std::exit(1);
}

std::vector<int> ParseList(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) Fail("bad list \"" + text + "\"");
    out.push_back(v);
  }
  return out;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  if (const char* out = std::getenv("OUT"); out != nullptr && out[0] != '\0') {
    a.json = std::string(out) + "/gpu_benchmark.json";
  }
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) Fail("missing value after " + flag);
    const std::string value = argv[++i];
    if (flag == "--preset") {
      a.preset = value;
    } else if (flag == "--dtype") {
      a.dtype = value;
    } else if (flag == "--context") {
      a.context = ParseList(value).at(0);
    } else if (flag == "--batches") {
      a.batches = ParseList(value);
    } else if (flag == "--prefill") {
      a.prefills = ParseList(value);
    } else if (flag == "--reps") {
      a.reps = ParseList(value).at(0);
    } else if (flag == "--json") {
      a.json = value;
    } else {
      Fail("unknown flag " + flag);
    }
  }
  return a;
}

void Check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Fail(what + ": " + std::string(s.message()));
}

void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) Fail(std::string(what) + ": " + cudaGetErrorString(e));
}

// Times `step` with CUDA events on the legacy default stream, which orders
// with the backend's (blocking) stream; Forward returns only when its step
// is done, so the events bracket it exactly. Returns the median in seconds.
template <typename F>
double MedianSeconds(int warmup, int reps, F&& step) {
  for (int i = 0; i < warmup; ++i) step();
  cudaEvent_t start, stop;
  CheckCuda(cudaEventCreate(&start), "cudaEventCreate");
  CheckCuda(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    CheckCuda(cudaEventRecord(start, 0), "cudaEventRecord");
    step();
    CheckCuda(cudaEventRecord(stop, 0), "cudaEventRecord");
    CheckCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    CheckCuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Row {
  std::string kind;
  int batch = 0;
  int tokens = 0;
  double seconds = 0.0;
  double tokens_per_second = 0.0;
  double bandwidth_fraction = 0.0;  // decode
  double tflops = 0.0;              // prefill
  double peak_fraction = 0.0;       // prefill
};

int Run(const Args& args) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) Fail("no usable CUDA device: " + why);
  absl::StatusOr<ModelConfig> config_or = DummyPresetConfig(args.preset);
  Check(config_or.status(), "preset");
  const ModelConfig c = *config_or;
  const int block_size = 16;
  const int max_batch = *std::max_element(args.batches.begin(), args.batches.end());
  const int max_prefill = *std::max_element(args.prefills.begin(), args.prefills.end());
  if (args.context + 1 > c.max_seq_len || max_prefill > c.max_seq_len) Fail("context exceeds the model's");
  const int blocks_per_seq = (args.context + 1 + block_size - 1) / block_size;
  const int prefill_blocks = (max_prefill + block_size - 1) / block_size;

  CudaBackendOptions options;
  options.dtype = args.dtype;
  options.kv.block_size = block_size;
  options.kv.num_blocks = max_batch * blocks_per_seq + prefill_blocks;
  options.max_num_seqs = std::max(max_batch, 8);
  options.max_num_batched_tokens = std::max(max_prefill, 8 * args.context);
  std::printf("creating the CUDA backend: %s, %s, %d KV blocks...\n", c.name.c_str(), args.dtype.c_str(),
              options.kv.num_blocks);
  std::fflush(stdout);
  absl::StatusOr<std::unique_ptr<Backend>> backend_or = CreateCudaBackendWithDummyWeights(c, 0, options);
  Check(backend_or.status(), "creating the backend");
  Backend& backend = **backend_or;
  const int vocab = c.vocab_size;
  const double element_bytes = args.dtype == "float32" ? 4.0 : 2.0;

  // Every sequence's own 1K context, written by real prefills (8 at a time).
  std::vector<std::vector<int>> tables(max_batch);
  std::vector<std::vector<int>> prompts(max_batch);
  for (int s = 0; s < max_batch; ++s) {
    tables[s].resize(blocks_per_seq);
    std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
    for (int i = 0; i < args.context; ++i) prompts[s].push_back(1 + (s * 7919 + i * 104729) % (vocab - 1));
  }
  const auto fill_start = std::chrono::steady_clock::now();
  for (int s0 = 0; s0 < max_batch; s0 += 8) {
    StepBatch batch;
    for (int s = s0; s < std::min(max_batch, s0 + 8); ++s) batch.AddSequence(prompts[s], args.context, tables[s], false);
    Check(backend.Forward(batch, {}), "prefilling the contexts");
  }
  std::printf("prefilled %d contexts of %d tokens in %.1f s\n", max_batch, args.context,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - fill_start).count());

  std::vector<Row> rows;
  // Weight bytes a step reads: every matrix and the classifier (not the
  // embedding table, of which it gathers a few rows).
  const double d = c.dim, q = c.q_dim(), kv = c.kv_dim(), h = c.hidden_dim, l = c.n_layers, v = c.vocab_size;
  const double layer_params = (q + 2 * kv) * d + d * q + 3 * h * d;
  const double weight_bytes = (l * layer_params + v * d) * element_bytes;
  std::vector<float> logits(static_cast<size_t>(max_batch) * vocab);
  for (const int b : args.batches) {
    // The same decode step each time: each sequence's token at position
    // `context`, rewriting that slot, so every run sees a 1K context.
    StepBatch batch;
    std::vector<std::vector<int>> next(b);
    for (int s = 0; s < b; ++s) {
      next[s] = {prompts[s][args.context - 1]};
      batch.AddSequence(next[s], args.context + 1, tables[s], true);
    }
    const double t = MedianSeconds(args.warmup, args.reps, [&] {
      Check(backend.Forward(batch, absl::MakeSpan(logits.data(), static_cast<size_t>(b) * vocab)), "decode step");
    });
    for (size_t i = 0; i < static_cast<size_t>(b) * vocab; ++i) {
      if (!std::isfinite(logits[i])) Fail("decode logits are not finite");
    }
    const double kv_bytes = static_cast<double>(b) * (args.context + 1) * 2 * l * kv * element_bytes;
    Row r;
    r.kind = "decode";
    r.batch = b;
    r.tokens = b;
    r.seconds = t;
    r.tokens_per_second = b / t;
    r.bandwidth_fraction = (weight_bytes + kv_bytes) / t / kPeakBytesPerSecond;
    rows.push_back(r);
    std::printf("decode batch %d: %.3f ms/step\n", b, t * 1e3);
    std::fflush(stdout);

    // The same step for greedy requests: the device selects each row's
    // candidate, and no logit row crosses to the host.
    StepBatch greedy;
    for (int s = 0; s < b; ++s) greedy.AddSequence(next[s], args.context + 1, tables[s], true, /*logits_top_k=*/1);
    std::vector<LogitCandidates> candidates(b);
    const double tg = MedianSeconds(args.warmup, args.reps, [&] {
      Check(backend.ForwardCandidates(greedy, {}, absl::MakeSpan(candidates)), "greedy decode step");
    });
    Row g = r;
    g.kind = "greedy";
    g.seconds = tg;
    g.tokens_per_second = b / tg;
    g.bandwidth_fraction = (weight_bytes + kv_bytes) / tg / kPeakBytesPerSecond;
    rows.push_back(g);
    std::printf("decode batch %d, greedy candidates only: %.3f ms/step\n", b, tg * 1e3);
    std::fflush(stdout);
  }

  std::vector<int> prefill_table(prefill_blocks);
  std::iota(prefill_table.begin(), prefill_table.end(), max_batch * blocks_per_seq);
  for (const int n : args.prefills) {
    std::vector<int> prompt(n);
    for (int i = 0; i < n; ++i) prompt[i] = 1 + (i * 7919) % (vocab - 1);
    StepBatch batch;
    batch.AddSequence(prompt, n, prefill_table, true);
    const int reps = n >= 4096 ? std::max(3, args.reps / 2) : args.reps;
    const double t = MedianSeconds(1, reps, [&] {
      Check(backend.Forward(batch, absl::MakeSpan(logits.data(), vocab)), "prefill");
    });
    // Matrix products of every token, the classifier for the last, and
    // causal attention (QKᵀ and PV over n(n+1)/2 pairs per head).
    const double flops = 2.0 * n * l * layer_params + 2.0 * v * d + 4.0 * l * q * (static_cast<double>(n) * (n + 1) / 2);
    Row r;
    r.kind = "prefill";
    r.batch = 1;
    r.tokens = n;
    r.seconds = t;
    r.tokens_per_second = n / t;
    r.tflops = flops / t / 1e12;
    r.peak_fraction = flops / t / kPeakFlops;
    rows.push_back(r);
    std::printf("prefill %d tokens: %.1f ms\n", n, t * 1e3);
    std::fflush(stdout);
  }

  if (!args.json.empty()) {
    std::ofstream out(args.json);
    out << "{\n  \"model\": \"" << c.name << "\", \"dtype\": \"" << args.dtype << "\", \"context\": " << args.context
        << ",\n  \"peak_bytes_per_second\": " << kPeakBytesPerSecond << ", \"peak_flops\": " << kPeakFlops
        << ",\n  \"results\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      out << "    {\"kind\": \"" << r.kind << "\", \"batch\": " << r.batch << ", \"tokens\": " << r.tokens
          << ", \"median_seconds\": " << r.seconds << ", \"tokens_per_second\": " << r.tokens_per_second
          << ", \"bandwidth_fraction\": " << r.bandwidth_fraction << ", \"tflops\": " << r.tflops
          << ", \"peak_fraction\": " << r.peak_fraction << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    std::printf("wrote %s\n", args.json.c_str());
  }

  std::printf("\n%s %s, context %d (median of timed runs, CUDA events)\n", c.name.c_str(), args.dtype.c_str(),
              args.context);
  std::printf("%-8s %6s %7s %11s %12s %10s %9s\n", "kind", "batch", "tokens", "ms", "tokens/s", "of 4.3TB/s",
              "TFLOP/s");
  for (const Row& r : rows) {
    if (r.kind != "prefill") {
      std::printf("%-8s %6d %7d %11.3f %12.1f %9.1f%% %9s\n", r.kind.c_str(), r.batch, r.tokens, r.seconds * 1e3,
                  r.tokens_per_second, 100 * r.bandwidth_fraction, "-");
    } else {
      std::printf("%-8s %6d %7d %11.3f %12.1f %10s %4.0f (%2.0f%% of 790)\n", r.kind.c_str(), r.batch, r.tokens,
                  r.seconds * 1e3, r.tokens_per_second, "-", r.tflops, 100 * r.peak_fraction);
    }
  }
  return 0;
}

}  // namespace
}  // namespace inferd

int main(int argc, char** argv) { return inferd::Run(inferd::ParseArgs(argc, argv)); }

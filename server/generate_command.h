// `inferd generate`: prompts in, one JSON object per prompt out (in input
// order), without a server.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/sampling_params.h"

namespace inferd {

struct GenerateOptions {
  std::string model;
  std::string tokenizer;
  int max_model_len = 0;  // 0: the model's own context length
  std::string prompt;
  std::string prompts_file;
  std::optional<int> max_tokens;
  SamplingParams sampling;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int kv_cache_blocks = 0;  // 0: from kv_cache_memory_mb
  int kv_cache_memory_mb = 2048;
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  bool no_prefix_caching = false;
  std::string backend = "cpu";  // cpu | cuda | auto
  std::string dtype = "auto";
  std::string kv_cache_dtype = "auto";
  int cpu_threads = 0;  // 0: every core the process may use
  double gpu_memory_utilization = 0.9;
};

void AddGenerateFlags(CLI::App* app, GenerateOptions* options);
int RunGenerate(const GenerateOptions& options);

}  // namespace inferd

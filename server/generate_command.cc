#include "server/generate_command.h"

#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "server/backend_factory.h"

namespace inferd {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "inferd generate: %s\n", std::string(status.message()).c_str());
  return 1;
}

absl::StatusOr<std::vector<std::string>> ReadPrompts(const GenerateOptions& options) {
  if (options.prompts_file.empty()) return std::vector<std::string>{options.prompt};
  std::ifstream in(options.prompts_file);
  if (!in) return absl::NotFoundError(absl::StrCat(options.prompts_file, ": cannot open prompts file"));
  std::vector<std::string> prompts;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    prompts.push_back(line);
  }
  return prompts;
}

// Everything the engine said about one prompt, gathered on the engine thread.
struct Completion {
  std::vector<int> prompt_ids;
  std::vector<int> output_ids;
  std::string text;
  RequestOutput last;
};

}  // namespace

void AddGenerateFlags(CLI::App* app, GenerateOptions* o) {
  app->add_option("--model", o->model, "model directory or file, or dummy:PRESET")->required();
  app->add_option("--tokenizer", o->tokenizer, "tokenizer file (default: beside the model)");
  app->add_option("--max-model-len", o->max_model_len, "served context in tokens, at most the model's (0: the model's)")
      ->check(CLI::NonNegativeNumber);
  CLI::Option_group* input = app->add_option_group("input", "exactly one of --prompt, --prompts-file");
  input->add_option("--prompt", o->prompt, "one prompt (may be empty: BOS only)");
  input->add_option("--prompts-file", o->prompts_file, "UTF-8 prompts, one per line, all submitted at once");
  input->require_option(1);
  app->add_option("--max-tokens", o->max_tokens, "tokens to generate at most (default: 256, or what fits)")
      ->check(CLI::PositiveNumber);
  app->add_option("--temperature", o->sampling.temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  app->add_option("--top-k", o->sampling.top_k, "0 = off")->check(CLI::NonNegativeNumber);
  app->add_option("--top-p", o->sampling.top_p, "in (0, 1]")->check(CLI::Range(0.0f, 1.0f));
  app->add_option("--min-p", o->sampling.min_p, "in [0, 1]")->check(CLI::Range(0.0f, 1.0f));
  app->add_option("--repetition-penalty", o->sampling.repetition_penalty, "> 0; 1 = off")
      ->check(CLI::PositiveNumber);
  app->add_option("--presence-penalty", o->sampling.presence_penalty, "in [-2, 2]")->check(CLI::Range(-2.0f, 2.0f));
  app->add_option("--frequency-penalty", o->sampling.frequency_penalty, "in [-2, 2]")
      ->check(CLI::Range(-2.0f, 2.0f));
  app->add_option("--seed", o->seed, "sampling seed (default: random per prompt)");
  app->add_option("--stop", o->stop, "stop string (repeatable; not included in the output)");
  app->add_flag("--ignore-eos", o->ignore_eos, "keep generating past EOS");
  app->add_option("--kv-cache-blocks", o->kv_cache_blocks, "KV cache blocks (default: from --kv-cache-memory-mb)")
      ->check(CLI::PositiveNumber);
  app->add_option("--kv-cache-memory-mb", o->kv_cache_memory_mb, "KV cache memory budget")
      ->check(CLI::PositiveNumber);
  app->add_option("--block-size", o->block_size, "tokens per KV block")->check(CLI::Range(1, 1024));
  app->add_option("--max-num-seqs", o->max_num_seqs, "sequences in one step at most")->check(CLI::PositiveNumber);
  app->add_option("--max-num-batched-tokens", o->max_num_batched_tokens, "tokens in one step at most")
      ->check(CLI::PositiveNumber);
  app->add_flag("--no-prefix-caching", o->no_prefix_caching, "do not reuse cached prompt blocks");
  app->add_option("--backend", o->backend, "cpu, cuda, or auto (cuda when a GPU is usable)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app->add_option("--dtype", o->dtype,
                  "weight type: auto (the CPU serves the weights as stored; CUDA their 16-bit type), float32, "
                  "bfloat16, float16, q8_0 (CPU only); the CPU converts every matrix at load")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16", "q8_0"}));
  app->add_option("--kv-cache-dtype", o->kv_cache_dtype,
                  "KV cache elements: auto (CPU: float32 beside float32 weights, float16 beside narrower ones; "
                  "CUDA: its compute dtype), float32, float16")
      ->check(CLI::IsMember({"auto", "float32", "float16"}));
  app->add_option("--cpu-threads", o->cpu_threads, "CPU backend threads (0: every core the process may use)")
      ->check(CLI::Range(0, 1024));
  app->add_option("--gpu-memory-utilization", o->gpu_memory_utilization,
                  "CUDA: fraction of free GPU memory for the KV cache")
      ->check(CLI::Range(0.01, 0.95));
}

int RunGenerate(const GenerateOptions& options) {
  absl::StatusOr<std::vector<std::string>> prompts = ReadPrompts(options);
  if (!prompts.ok()) return Fail(prompts.status());
  absl::StatusOr<std::optional<WeightType>> dtype = LoadDtype(options.backend, options.dtype);
  if (!dtype.ok()) return Fail(dtype.status());
  absl::StatusOr<LoadedModel> model = LoadModel(options.model, LoadOptions{.tokenizer_path = options.tokenizer,
                                                                      .max_model_len = options.max_model_len,
                                                                      .kv_pool_bytes = CpuKvPoolBytes(options.backend, options.kv_cache_memory_mb),
                                                                      .dtype = *dtype,
                                                                      .num_threads = options.cpu_threads});
  if (!model.ok()) return Fail(model.status());
  if (!model->conversion_note.empty()) std::fprintf(stderr, "inferd generate: %s\n", model->conversion_note.c_str());
  const ModelConfig& config = model->weights->config;
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      CreateBackend(model->weights, BackendOptions{.backend = options.backend,
                                                   .dtype = options.dtype,
                                                   .cpu_threads = options.cpu_threads,
                                                   .kv_cache_dtype = options.kv_cache_dtype,
                                                   .kv_cache_blocks = options.kv_cache_blocks,
                                                   .kv_cache_memory_mb = options.kv_cache_memory_mb,
                                                   .gpu_memory_utilization = options.gpu_memory_utilization,
                                                   .block_size = options.block_size,
                                                   .max_num_seqs = options.max_num_seqs,
                                                   .max_num_batched_tokens = options.max_num_batched_tokens});
  if (!backend.ok()) return Fail(backend.status());
  EngineConfig engine_config;
  engine_config.scheduler = {.max_num_seqs = options.max_num_seqs,
                             .max_num_batched_tokens = options.max_num_batched_tokens};
  engine_config.enable_prefix_caching = !options.no_prefix_caching;
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(engine_config, *std::move(backend), model->tokenizer);
  if (!engine.ok()) return Fail(engine.status());

  // Every prompt is submitted before any output is read; the callbacks only
  // append to their own slot.
  std::vector<Completion> completions(prompts->size());
  for (size_t i = 0; i < prompts->size(); ++i) {
    Completion& c = completions[i];
    c.prompt_ids = model->tokenizer->Encode((*prompts)[i], model->tokenizer->AddsBosByDefault());
    Request request;
    request.id = std::to_string(i);
    request.prompt_ids = c.prompt_ids;
    request.sampling = options.sampling;
    request.sampling.seed = options.seed;
    const int room = config.max_seq_len - static_cast<int>(c.prompt_ids.size());
    request.stopping.max_tokens = options.max_tokens.value_or(std::max(1, std::min(256, room)));
    request.stopping.stop = options.stop;
    request.stopping.ignore_eos = options.ignore_eos;
    request.on_output = [&c](RequestOutput out) {
      c.output_ids.insert(c.output_ids.end(), out.token_ids.begin(), out.token_ids.end());
      c.text += out.text;
      if (out.finished) c.last = std::move(out);
    };
    if (absl::Status s = (*engine)->Submit(std::move(request)); !s.ok()) {
      return Fail(absl::Status(s.code(), absl::StrCat("prompt ", i + 1, ": ", s.message())));
    }
  }
  (*engine)->WaitUntilIdle(absl::InfiniteFuture());
  (*engine)->Shutdown();

  for (size_t i = 0; i < prompts->size(); ++i) {
    const Completion& c = completions[i];
    if (!c.last.status.ok()) return Fail(c.last.status);
    nlohmann::json line = {
        {"prompt", (*prompts)[i]},
        {"prompt_ids", c.prompt_ids},
        {"output_ids", c.output_ids},
        {"text", c.text},
        {"finish_reason", FinishReasonName(c.last.finish_reason)},
        {"usage",
         {{"prompt_tokens", c.last.usage.prompt_tokens},
          {"completion_tokens", c.last.usage.completion_tokens},
          {"cached_prompt_tokens", c.last.usage.cached_prompt_tokens}}},
    };
    std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  std::cout.flush();
  return 0;
}

}  // namespace inferd

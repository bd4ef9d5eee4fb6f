#include "server/backend_factory.h"

#include <algorithm>

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"
#include "cuda/cuda_plugin.h"
#include "server/cuda_plugin_loader.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/memory_budget.h"
#include "engine/model/weight_conversion.h"

namespace inferd {
namespace {

absl::StatusOr<std::unique_ptr<Backend>> CreateCpu(std::shared_ptr<const ModelWeights> weights,
                                                   const BackendOptions& options) {
  absl::StatusOr<std::optional<WeightType>> dtype = ParseWeightDtype(options.dtype);
  if (!dtype.ok()) return dtype.status();
  // The loader converts (LoadDtype); weights of another type here mean a
  // caller skipped that step.
  if (dtype->has_value() && weights->dtype != **dtype) {
    return absl::InvalidArgumentError(absl::StrCat("--dtype ", options.dtype, ": the weights were loaded as ",
                                                   std::string(WeightTypeName(weights->dtype)), ", not converted"));
  }
  absl::StatusOr<WeightType> parsed_kv_dtype = CpuBackend::ParseKvDtype(options.kv_cache_dtype, weights->dtype);
  if (!parsed_kv_dtype.ok()) return parsed_kv_dtype.status();
  const WeightType kv_dtype = *parsed_kv_dtype;
  const int kv_element_bytes = static_cast<int>(RowBytes(kv_dtype, 1));
  const ModelConfig& model = weights->config;
  KvCacheConfig kv{.num_blocks = options.kv_cache_blocks, .block_size = options.block_size};
  if (kv.num_blocks == 0) {
    absl::StatusOr<int> blocks =
        KvBlocksForBudget(model, kv.block_size, kv_element_bytes, int64_t{options.kv_cache_memory_mb} << 20);
    if (!blocks.ok()) return blocks.status();
    // More than max_num_seqs full contexts can never be used at once.
    const int64_t useful =
        int64_t{options.max_num_seqs} * ((model.max_seq_len + kv.block_size - 1) / kv.block_size);
    kv.num_blocks = static_cast<int>(std::min<int64_t>(*blocks, useful));
  }
  // The pools are allocated uncommitted (the server commits them next, a
  // one-shot generate as blocks are written), so an allocation that cannot
  // be backed would succeed and fail later; refuse it now. The engine keeps a few
  // dozen bytes of bookkeeping per block besides.
  constexpr int64_t kBookkeepingBytesPerBlock = 128;
  const int64_t pool_bytes =
      int64_t{kv.num_blocks} * (KvBlockBytes(model, kv.block_size, kv_element_bytes) + kBookkeepingBytesPerBlock);
  if (absl::Status fits = CheckFitsInMemory(
          pool_bytes, absl::StrCat("the KV cache of ", kv.num_blocks, " blocks"),
          options.kv_cache_blocks > 0 ? "lower --kv-cache-blocks"
                                      : "lower --kv-cache-memory-mb or --max-num-seqs");
      !fits.ok()) {
    return fits;
  }
  absl::StatusOr<std::unique_ptr<CpuBackend>> backend =
      CpuBackend::Create(std::move(weights), kv, options.cpu_threads, kv_dtype);
  if (!backend.ok()) return backend.status();
  if (options.commit_kv_cache) {
    // (`model` went with the weights: the backend holds them now.)
    const int64_t cache_mib =
        (int64_t{kv.num_blocks} * KvBlockBytes((*backend)->config(), kv.block_size, kv_element_bytes)) >> 20;
    const absl::Time start = absl::Now();
    if ((*backend)->CommitKvCache()) {
      spdlog::info("committed the KV cache's {} MiB in {:.2f} s", cache_mib,
                   absl::ToDoubleSeconds(absl::Now() - start));
    } else {
      spdlog::warn("could not commit the KV cache's {} MiB ahead (Linux 5.14+ commits it at start): its pages fault "
                   "in as blocks are first written, in the steps that write them",
                   cache_mib);
    }
  }
  return std::unique_ptr<Backend>(*std::move(backend));
}

// The CUDA plugin beside this binary (or $INFERD_CUDA_PLUGIN), loaded once.
absl::StatusOr<const CudaPluginApi*> CudaPlugin() {
  static const absl::StatusOr<const CudaPluginApi*>* plugin = [] {
    std::string path;
    if (const char* override_path = std::getenv("INFERD_CUDA_PLUGIN"); override_path && *override_path) {
      path = override_path;
    } else {
      std::error_code error;
      path = (std::filesystem::read_symlink("/proc/self/exe", error).parent_path() / kCudaPluginFile).string();
    }
    return new absl::StatusOr<const CudaPluginApi*>(LoadCudaPlugin(path));
  }();
  return *plugin;
}

bool CudaUsable(std::string* why) {
  absl::StatusOr<const CudaPluginApi*> plugin = CudaPlugin();
  if (!plugin.ok()) {
    *why = std::string(plugin.status().message());
    return false;
  }
  return (*plugin)->device_available(why);
}

absl::Status CheckCudaDtype(const std::string& dtype) {
  if (dtype == "q8_0") {
    return absl::InvalidArgumentError(
        "--dtype q8_0: the CUDA backend computes in float32, float16 or bfloat16 (it widens Q8_0 weights to "
        "bfloat16 itself); q8_0 is served by --backend cpu");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCuda(std::shared_ptr<const ModelWeights> weights,
                                                    const BackendOptions& options) {
  if (absl::Status s = CheckCudaDtype(options.dtype); !s.ok()) return s;
  CudaBackendOptions cuda;
  // auto: the weights' own 16-bit type (Q8_0 widens to bfloat16 at upload).
  cuda.dtype = options.dtype != "auto"                  ? options.dtype
               : weights->dtype == WeightType::kF16     ? "float16"
                                                         : "bfloat16";
  if (options.kv_cache_dtype != "auto" && options.kv_cache_dtype != cuda.dtype) {
    return absl::InvalidArgumentError(absl::StrCat("--kv-cache-dtype ", options.kv_cache_dtype,
                                                   ": the CUDA backend holds its KV cache in its compute dtype (",
                                                   cuda.dtype, "); leave it auto"));
  }
  cuda.gpu_memory_utilization = options.gpu_memory_utilization;
  cuda.kv = KvCacheConfig{.num_blocks = options.kv_cache_blocks, .block_size = options.block_size};
  cuda.max_num_batched_tokens = options.max_num_batched_tokens;
  cuda.max_num_seqs = options.max_num_seqs;
  cuda.log = [](const std::string& line) { spdlog::info("{}", line); };
  absl::StatusOr<const CudaPluginApi*> plugin = CudaPlugin();
  if (!plugin.ok()) return plugin.status();
  return (*plugin)->create_backend(std::move(weights), cuda);
}

}  // namespace

int64_t CpuKvPoolBytes(const std::string& backend, int kv_cache_memory_mb) {
  return backend == "cpu" ? int64_t{kv_cache_memory_mb} << 20 : 0;
}

absl::StatusOr<std::optional<WeightType>> LoadDtype(const std::string& backend, const std::string& dtype) {
  absl::StatusOr<std::optional<WeightType>> type = ParseWeightDtype(dtype);
  if (!type.ok()) return type.status();
  std::string why;
  const bool cuda = backend == "cuda" || (backend == "auto" && CudaUsable(&why));
  if (!cuda) return type;
  if (absl::Status s = CheckCudaDtype(dtype); !s.ok()) return s;
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options) {
  if (options.backend == "cpu") return CreateCpu(std::move(weights), options);
  std::string why;
  const bool gpu = CudaUsable(&why);
  if (options.backend == "auto") {
    return gpu ? CreateCuda(std::move(weights), options) : CreateCpu(std::move(weights), options);
  }
  if (options.backend == "cuda") {
    if (!gpu) return absl::UnavailableError(absl::StrCat("--backend cuda: no usable GPU: ", why));
    return CreateCuda(std::move(weights), options);
  }
  return absl::InvalidArgumentError(absl::StrCat("--backend ", options.backend, ": expected cpu, cuda or auto"));
}

}  // namespace inferd

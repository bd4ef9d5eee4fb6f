// The model's weights in device memory, in the serving dtype, laid out for
// the forward pass: per layer the query/key/value matrices stacked into one
// [q_dim + 2 kv_dim][dim] matrix and the gate/up matrices into one
// [2 hidden][dim] matrix, so each is a single GEMM. Norm weights, q/k/v
// biases (one [q_dim + 2 kv_dim] vector) and q/k norms stay fp32. Host
// tensors travel as stored (F32, F16, BF16, Q8_0) and are converted on the
// device.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "cuda/dtype.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"

namespace inferd::cuda {

// Element offsets of every tensor in ModelWeights' fp32 storage (llama2.c
// file order, as ModelWeights::AllocateF32 lays it out); the dummy generator's
// element index is the offset in this storage.
struct HostWeightLayout {
  int64_t token_embedding = 0;
  int64_t rms_att = 0;  // [layers][dim], and so on for each tensor below
  int64_t wq = 0;
  int64_t wk = 0;
  int64_t wv = 0;
  int64_t wo = 0;
  int64_t rms_ffn = 0;
  int64_t w1 = 0;
  int64_t w2 = 0;
  int64_t w3 = 0;
  int64_t rms_final = 0;
  int64_t wcls = 0;  // == token_embedding when the classifier is shared
  int64_t total = 0;

  static HostWeightLayout For(const ModelConfig& c);
};

struct DeviceLayerWeights {
  const float* rms_att = nullptr;  // [dim]
  const void* wqkv = nullptr;      // [q_dim + 2 kv_dim][dim]
  const float* bqkv = nullptr;     // [q_dim + 2 kv_dim]; only with attention_bias
  const float* q_norm = nullptr;   // [head_dim]; only with qk_norm
  const float* k_norm = nullptr;   // [head_dim]; only with qk_norm
  const void* wo = nullptr;        // [dim][q_dim]
  const float* rms_ffn = nullptr;  // [dim]
  const void* w13 = nullptr;       // [2 hidden][dim]: gate rows, then up rows
  const void* w2 = nullptr;        // [dim][hidden]
};

class DeviceWeights {
 public:
  // Sends each tensor as stored, in chunks through pinned staging buffers,
  // and converts it to `dtype` (norms and biases: fp32) on the device.
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> Upload(const ModelWeights& weights, Dtype dtype,
                                                               cudaStream_t stream);
  // MakeDummyWeights(config, seed), generated on the device.
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> GenerateDummy(const ModelConfig& config, uint64_t seed,
                                                                      Dtype dtype, cudaStream_t stream);
  // Bytes the weights of `config` take on the device in `dtype`.
  static int64_t DeviceBytes(const ModelConfig& config, Dtype dtype);

  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  Dtype dtype() const { return dtype_; }
  int64_t bytes() const { return bytes_; }
  const void* token_embedding() const { return token_embedding_; }  // [vocab][dim]
  const void* wcls() const { return wcls_; }                        // [vocab][dim]
  const float* rms_final() const { return rms_final_; }
  const DeviceLayerWeights& layer(int i) const { return layers_[static_cast<size_t>(i)]; }

 private:
  // One host tensor and where it goes on the device.
  struct Piece {
    enum class Kind {
      kMatrix,  // in the serving dtype
      kNorm,    // fp32 (1 in dummy weights)
      kBias,    // fp32 (0 in dummy weights)
    };
    void* dst = nullptr;
    Kind kind = Kind::kMatrix;
    int64_t source = 0;  // dummy weights: element offset in the llama2.c-order storage
    int64_t count = 0;
    Tensor tensor;       // upload: the host tensor (count elements)
  };

  DeviceWeights(const ModelConfig& config, Dtype dtype) : config_(config), dtype_(dtype) {}
  // Lays out the device tensors; with `host`, each piece names its tensor.
  absl::Status Allocate(const ModelWeights* host, std::vector<Piece>* pieces);

  ModelConfig config_;
  Dtype dtype_;
  void* allocation_ = nullptr;
  int64_t bytes_ = 0;
  const void* token_embedding_ = nullptr;
  const void* wcls_ = nullptr;
  const float* rms_final_ = nullptr;
  std::vector<DeviceLayerWeights> layers_;
};

}  // namespace inferd::cuda

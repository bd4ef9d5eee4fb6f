#include "cuda/device_weights.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cuda/cuda_check.h"
#include "cuda/dummy_generator.h"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

constexpr int64_t kAlignment = 256;

int64_t RoundUp(int64_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// Byte offsets of every device tensor in the one allocation.
struct DeviceLayout {
  struct Layer {
    int64_t rms_att, wqkv, wo, rms_ffn, w13, w2;
  };
  int64_t token_embedding = 0;
  std::vector<Layer> layers;
  int64_t rms_final = 0;
  int64_t wcls = -1;  // -1: shared with the token embedding
  int64_t total = 0;

  DeviceLayout(const ModelConfig& c, Dtype dtype) {
    const int64_t es = static_cast<int64_t>(DtypeSize(dtype));
    const int64_t d = c.dim, kv = c.kv_dim(), h = c.hidden_dim, v = c.vocab_size;
    auto take = [this](int64_t bytes) {
      const int64_t offset = total;
      total += RoundUp(bytes);
      return offset;
    };
    token_embedding = take(v * d * es);
    for (int i = 0; i < c.n_layers; ++i) {
      Layer layer;
      layer.rms_att = take(d * 4);
      layer.wqkv = take((d + 2 * kv) * d * es);
      layer.wo = take(d * d * es);
      layer.rms_ffn = take(d * 4);
      layer.w13 = take(2 * h * d * es);
      layer.w2 = take(d * h * es);
      layers.push_back(layer);
    }
    rms_final = take(d * 4);
    if (!c.shared_classifier) wcls = take(v * d * es);
  }
};

}  // namespace

HostWeightLayout HostWeightLayout::For(const ModelConfig& c) {
  const int64_t d = c.dim, h = c.hidden_dim, l = c.n_layers, v = c.vocab_size, kv = c.kv_dim();
  HostWeightLayout layout;
  int64_t offset = 0;
  auto take = [&offset](int64_t n) {
    const int64_t at = offset;
    offset += n;
    return at;
  };
  layout.token_embedding = take(v * d);
  layout.rms_att = take(l * d);
  layout.wq = take(l * d * d);
  layout.wk = take(l * kv * d);
  layout.wv = take(l * kv * d);
  layout.wo = take(l * d * d);
  layout.rms_ffn = take(l * d);
  layout.w1 = take(l * h * d);
  layout.w2 = take(l * d * h);
  layout.w3 = take(l * h * d);
  layout.rms_final = take(d);
  layout.wcls = c.shared_classifier ? layout.token_embedding : take(v * d);
  layout.total = offset;
  return layout;
}

int64_t DeviceWeights::DeviceBytes(const ModelConfig& config, Dtype dtype) {
  return DeviceLayout(config, dtype).total;
}

DeviceWeights::~DeviceWeights() {
  if (allocation_ != nullptr) cudaFree(allocation_);
}

absl::Status DeviceWeights::Allocate(std::vector<Piece>* pieces) {
  const ModelConfig& c = config_;
  const DeviceLayout device(c, dtype_);
  const HostWeightLayout host = HostWeightLayout::For(c);
  size_t free_bytes = 0, total_bytes = 0;
  INFERD_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (device.total > static_cast<int64_t>(free_bytes)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: %s weights need %.2f GB of device memory, but only %.2f GB of %.2f GB are free", c.name,
        std::string(DtypeName(dtype_)), device.total / 1e9, free_bytes / 1e9, total_bytes / 1e9));
  }
  INFERD_CUDA_RETURN_IF_ERROR(cudaMalloc(&allocation_, static_cast<size_t>(device.total)));
  bytes_ = device.total;
  char* base = static_cast<char*>(allocation_);
  const int64_t es = static_cast<int64_t>(DtypeSize(dtype_));
  const int64_t d = c.dim, kv = c.kv_dim(), h = c.hidden_dim, v = c.vocab_size;

  token_embedding_ = base + device.token_embedding;
  pieces->push_back({base + device.token_embedding, false, host.token_embedding, v * d});
  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    const DeviceLayout::Layer& dl = device.layers[static_cast<size_t>(i)];
    DeviceLayerWeights& lw = layers_[static_cast<size_t>(i)];
    lw.rms_att = reinterpret_cast<const float*>(base + dl.rms_att);
    lw.wqkv = base + dl.wqkv;
    lw.wo = base + dl.wo;
    lw.rms_ffn = reinterpret_cast<const float*>(base + dl.rms_ffn);
    lw.w13 = base + dl.w13;
    lw.w2 = base + dl.w2;
    pieces->push_back({base + dl.rms_att, true, host.rms_att + i * d, d});
    pieces->push_back({base + dl.wqkv, false, host.wq + i * d * d, d * d});
    pieces->push_back({base + dl.wqkv + d * d * es, false, host.wk + i * kv * d, kv * d});
    pieces->push_back({base + dl.wqkv + (d + kv) * d * es, false, host.wv + i * kv * d, kv * d});
    pieces->push_back({base + dl.wo, false, host.wo + i * d * d, d * d});
    pieces->push_back({base + dl.rms_ffn, true, host.rms_ffn + i * d, d});
    pieces->push_back({base + dl.w13, false, host.w1 + i * h * d, h * d});
    pieces->push_back({base + dl.w13 + h * d * es, false, host.w3 + i * h * d, h * d});
    pieces->push_back({base + dl.w2, false, host.w2 + i * d * h, d * h});
  }
  rms_final_ = reinterpret_cast<const float*>(base + device.rms_final);
  pieces->push_back({base + device.rms_final, true, host.rms_final, d});
  if (device.wcls >= 0) {
    wcls_ = base + device.wcls;
    pieces->push_back({base + device.wcls, false, host.wcls, v * d});
  } else {
    wcls_ = token_embedding_;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::Upload(const ModelWeights& weights, Dtype dtype,
                                                                     cudaStream_t stream) {
  if (weights.f32_storage() == nullptr ||
      static_cast<int64_t>(weights.f32_storage_size()) != HostWeightLayout::For(weights.config).total) {
    return absl::UnimplementedError(absl::StrCat("CUDA backend: ", weights.config.name,
                                                 ": uploads only fp32 weights in llama2.c layout"));
  }
  std::unique_ptr<DeviceWeights> w(new DeviceWeights(weights.config, dtype));
  std::vector<Piece> pieces;
  INFERD_RETURN_IF_ERROR(w->Allocate(&pieces));

  // Two pinned staging buffers (and two device fp32 buffers when converting),
  // so copying one chunk on the host overlaps the transfer of the other.
  constexpr int64_t kChunk = int64_t{8} << 20;  // floats
  float* pinned[2] = {nullptr, nullptr};
  float* staging[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  auto release = [&] {
    for (int i = 0; i < 2; ++i) {
      if (pinned[i] != nullptr) cudaFreeHost(pinned[i]);
      if (staging[i] != nullptr) cudaFree(staging[i]);
      if (done[i] != nullptr) cudaEventDestroy(done[i]);
    }
  };
  absl::Status status = [&]() -> absl::Status {
    for (int i = 0; i < 2; ++i) {
      INFERD_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned[i], kChunk * sizeof(float)));
      if (dtype != Dtype::kFloat32) INFERD_CUDA_RETURN_IF_ERROR(cudaMalloc(&staging[i], kChunk * sizeof(float)));
      INFERD_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
    const float* host = weights.f32_storage();
    int buf = 0;
    for (const Piece& piece : pieces) {
      const bool as_fp32 = piece.fp32 || dtype == Dtype::kFloat32;
      const int64_t element_size = as_fp32 ? 4 : static_cast<int64_t>(DtypeSize(dtype));
      for (int64_t done_count = 0; done_count < piece.count; done_count += kChunk) {
        const int64_t n = std::min(kChunk, piece.count - done_count);
        INFERD_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done[buf]));
        std::memcpy(pinned[buf], host + piece.source + done_count, static_cast<size_t>(n) * sizeof(float));
        char* dst = static_cast<char*>(piece.dst) + done_count * element_size;
        if (as_fp32) {
          INFERD_CUDA_RETURN_IF_ERROR(
              cudaMemcpyAsync(dst, pinned[buf], n * sizeof(float), cudaMemcpyHostToDevice, stream));
        } else {
          INFERD_CUDA_RETURN_IF_ERROR(
              cudaMemcpyAsync(staging[buf], pinned[buf], n * sizeof(float), cudaMemcpyHostToDevice, stream));
          INFERD_CUDA_RETURN_IF_ERROR(LaunchConvertFromFloat(dtype, staging[buf], n, dst, stream));
        }
        INFERD_CUDA_RETURN_IF_ERROR(cudaEventRecord(done[buf], stream));
        buf ^= 1;
      }
    }
    INFERD_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return absl::OkStatus();
  }();
  release();
  if (!status.ok()) return status;
  return w;
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::GenerateDummy(const ModelConfig& config, uint64_t seed,
                                                                            Dtype dtype, cudaStream_t stream) {
  std::unique_ptr<DeviceWeights> w(new DeviceWeights(config, dtype));
  std::vector<Piece> pieces;
  INFERD_RETURN_IF_ERROR(w->Allocate(&pieces));

  std::vector<float> host_tables(static_cast<size_t>(3 * kDummyTableSize));
  float* radius = host_tables.data();
  float* cosine = radius + kDummyTableSize;
  float* sine = cosine + kDummyTableSize;
  BuildDummyTables(radius, cosine, sine);
  float* tables = nullptr;
  absl::Status status = [&]() -> absl::Status {
    INFERD_CUDA_RETURN_IF_ERROR(cudaMalloc(&tables, host_tables.size() * sizeof(float)));
    INFERD_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(tables, host_tables.data(), host_tables.size() * sizeof(float), cudaMemcpyHostToDevice));
    const float* d_radius = tables;
    const float* d_cosine = tables + kDummyTableSize;
    const float* d_sine = d_cosine + kDummyTableSize;
    const uint64_t key = DummyKey(seed);
    for (const Piece& piece : pieces) {
      if (piece.fp32) {
        // Norm weights are 1, as MakeDummyWeights sets them.
        INFERD_CUDA_RETURN_IF_ERROR(LaunchFillFloat(static_cast<float*>(piece.dst), piece.count, 1.0f, stream));
      } else {
        INFERD_CUDA_RETURN_IF_ERROR(LaunchDummyFill(dtype, piece.dst, piece.count, key, piece.source, d_radius,
                                                    d_cosine, d_sine, stream));
      }
    }
    INFERD_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return absl::OkStatus();
  }();
  if (tables != nullptr) cudaFree(tables);
  if (!status.ok()) return status;
  return w;
}

}  // namespace inferd::cuda

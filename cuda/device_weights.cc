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
    int64_t rms_att, wqkv, bqkv = -1, q_norm = -1, k_norm = -1, wo, rms_ffn, w13, w2;
  };
  int64_t token_embedding = 0;
  std::vector<Layer> layers;
  int64_t rms_final = 0;
  int64_t wcls = -1;  // -1: shared with the token embedding
  int64_t total = 0;

  DeviceLayout(const ModelConfig& c, Dtype dtype) {
    const int64_t es = static_cast<int64_t>(DtypeSize(dtype));
    const int64_t d = c.dim, q = c.q_dim(), kv = c.kv_dim(), h = c.hidden_dim, v = c.vocab_size;
    auto take = [this](int64_t bytes) {
      const int64_t offset = total;
      total += RoundUp(bytes);
      return offset;
    };
    token_embedding = take(v * d * es);
    for (int i = 0; i < c.n_layers; ++i) {
      Layer layer;
      layer.rms_att = take(d * 4);
      layer.wqkv = take((q + 2 * kv) * d * es);
      if (c.attention_bias) layer.bqkv = take((q + 2 * kv) * 4);
      if (c.qk_norm) {
        layer.q_norm = take(int64_t{c.head_dim()} * 4);
        layer.k_norm = take(int64_t{c.head_dim()} * 4);
      }
      layer.wo = take(d * q * es);
      layer.rms_ffn = take(d * 4);
      layer.w13 = take(2 * h * d * es);
      layer.w2 = take(d * h * es);
      layers.push_back(layer);
    }
    rms_final = take(d * 4);
    if (!c.shared_classifier) wcls = take(v * d * es);
  }
};

StoredType StoredTypeOf(WeightType t) {
  switch (t) {
    case WeightType::kF32: return StoredType::kF32;
    case WeightType::kF16: return StoredType::kF16;
    case WeightType::kBF16: return StoredType::kBF16;
    case WeightType::kQ8_0: return StoredType::kQ8_0;
  }
  return StoredType::kF32;
}

}  // namespace

HostWeightLayout HostWeightLayout::For(const ModelConfig& c) {
  const int64_t d = c.dim, q = c.q_dim(), h = c.hidden_dim, l = c.n_layers, v = c.vocab_size, kv = c.kv_dim();
  HostWeightLayout layout;
  int64_t offset = 0;
  auto take = [&offset](int64_t n) {
    const int64_t at = offset;
    offset += n;
    return at;
  };
  layout.token_embedding = take(v * d);
  layout.rms_att = take(l * d);
  layout.wq = take(l * q * d);
  layout.wk = take(l * kv * d);
  layout.wv = take(l * kv * d);
  layout.wo = take(l * d * q);
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

absl::Status DeviceWeights::Allocate(const ModelWeights* host_weights, std::vector<Piece>* pieces) {
  using Kind = Piece::Kind;
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
  const int64_t d = c.dim, q = c.q_dim(), kv = c.kv_dim(), h = c.hidden_dim, v = c.vocab_size, hd = c.head_dim();
  // The host tensor of a piece, when uploading.
  auto tensor = [host_weights](auto member) { return host_weights != nullptr ? member(*host_weights) : Tensor{}; };

  token_embedding_ = base + device.token_embedding;
  pieces->push_back({base + device.token_embedding, Kind::kMatrix, host.token_embedding, v * d,
                     tensor([](const ModelWeights& w) { return w.token_embedding; })});
  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    const DeviceLayout::Layer& dl = device.layers[static_cast<size_t>(i)];
    DeviceLayerWeights& lw = layers_[static_cast<size_t>(i)];
    const auto layer = [i](auto field) {
      return [i, field](const ModelWeights& w) { return field(w.layers[static_cast<size_t>(i)]); };
    };
    lw.rms_att = reinterpret_cast<const float*>(base + dl.rms_att);
    lw.wqkv = base + dl.wqkv;
    lw.wo = base + dl.wo;
    lw.rms_ffn = reinterpret_cast<const float*>(base + dl.rms_ffn);
    lw.w13 = base + dl.w13;
    lw.w2 = base + dl.w2;
    pieces->push_back({base + dl.rms_att, Kind::kNorm, host.rms_att + i * d, d,
                       tensor(layer([](const LayerWeights& l) { return l.rms_att; }))});
    pieces->push_back({base + dl.wqkv, Kind::kMatrix, host.wq + i * q * d, q * d,
                       tensor(layer([](const LayerWeights& l) { return l.wq; }))});
    pieces->push_back({base + dl.wqkv + q * d * es, Kind::kMatrix, host.wk + i * kv * d, kv * d,
                       tensor(layer([](const LayerWeights& l) { return l.wk; }))});
    pieces->push_back({base + dl.wqkv + (q + kv) * d * es, Kind::kMatrix, host.wv + i * kv * d, kv * d,
                       tensor(layer([](const LayerWeights& l) { return l.wv; }))});
    if (dl.bqkv >= 0) {
      float* b = reinterpret_cast<float*>(base + dl.bqkv);
      lw.bqkv = b;
      pieces->push_back({b, Kind::kBias, 0, q, tensor(layer([](const LayerWeights& l) { return l.bq; }))});
      pieces->push_back({b + q, Kind::kBias, 0, kv, tensor(layer([](const LayerWeights& l) { return l.bk; }))});
      pieces->push_back({b + q + kv, Kind::kBias, 0, kv, tensor(layer([](const LayerWeights& l) { return l.bv; }))});
    }
    if (dl.q_norm >= 0) {
      lw.q_norm = reinterpret_cast<const float*>(base + dl.q_norm);
      lw.k_norm = reinterpret_cast<const float*>(base + dl.k_norm);
      pieces->push_back({base + dl.q_norm, Kind::kNorm, 0, hd,
                         tensor(layer([](const LayerWeights& l) { return l.q_norm; }))});
      pieces->push_back({base + dl.k_norm, Kind::kNorm, 0, hd,
                         tensor(layer([](const LayerWeights& l) { return l.k_norm; }))});
    }
    pieces->push_back({base + dl.wo, Kind::kMatrix, host.wo + i * d * q, d * q,
                       tensor(layer([](const LayerWeights& l) { return l.wo; }))});
    pieces->push_back({base + dl.rms_ffn, Kind::kNorm, host.rms_ffn + i * d, d,
                       tensor(layer([](const LayerWeights& l) { return l.rms_ffn; }))});
    pieces->push_back({base + dl.w13, Kind::kMatrix, host.w1 + i * h * d, h * d,
                       tensor(layer([](const LayerWeights& l) { return l.w1; }))});
    pieces->push_back({base + dl.w13 + h * d * es, Kind::kMatrix, host.w3 + i * h * d, h * d,
                       tensor(layer([](const LayerWeights& l) { return l.w3; }))});
    pieces->push_back({base + dl.w2, Kind::kMatrix, host.w2 + i * d * h, d * h,
                       tensor(layer([](const LayerWeights& l) { return l.w2; }))});
  }
  rms_final_ = reinterpret_cast<const float*>(base + device.rms_final);
  pieces->push_back({base + device.rms_final, Kind::kNorm, host.rms_final, d,
                     tensor([](const ModelWeights& w) { return w.rms_final; })});
  if (device.wcls >= 0) {
    wcls_ = base + device.wcls;
    pieces->push_back({base + device.wcls, Kind::kMatrix, host.wcls, v * d,
                       tensor([](const ModelWeights& w) { return w.wcls; })});
  } else {
    wcls_ = token_embedding_;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::Upload(const ModelWeights& weights, Dtype dtype,
                                                                     cudaStream_t stream) {
  std::unique_ptr<DeviceWeights> w(new DeviceWeights(weights.config, dtype));
  std::vector<Piece> pieces;
  INFERD_RETURN_IF_ERROR(w->Allocate(&weights, &pieces));
  for (const Piece& piece : pieces) {
    const Tensor& t = piece.tensor;
    if (t.empty() || t.rows * t.cols != piece.count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CUDA backend: ", weights.config.name, ": a weight tensor is missing or has ", t.rows * t.cols,
          " elements where the config implies ", piece.count));
    }
    if (piece.kind != Piece::Kind::kMatrix && t.type != WeightType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat("CUDA backend: ", weights.config.name,
                                                     ": a norm or bias tensor is not float32"));
    }
    if (t.type == WeightType::kQ8_0 && t.cols % kQ8_0Block != 0) {
      return absl::InvalidArgumentError(absl::StrCat("CUDA backend: ", weights.config.name,
                                                     ": a Q8_0 tensor's rows are not whole blocks"));
    }
  }

  // Two pinned staging buffers and two device staging buffers, so copying
  // one chunk on the host overlaps the transfer and conversion of the other.
  // A chunk is whole Q8_0 blocks, so a Q8_0 tensor splits between blocks.
  constexpr int64_t kChunkElements = int64_t{8} << 20;
  constexpr size_t kChunkBytes = static_cast<size_t>(kChunkElements) * 4;
  void* pinned[2] = {nullptr, nullptr};
  void* staging[2] = {nullptr, nullptr};
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
      INFERD_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned[i], kChunkBytes));
      INFERD_CUDA_RETURN_IF_ERROR(cudaMalloc(&staging[i], kChunkBytes));
      INFERD_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
    int buf = 0;
    for (const Piece& piece : pieces) {
      const Tensor& t = piece.tensor;
      const bool keep_fp32 = piece.kind != Piece::Kind::kMatrix;
      const Dtype target = keep_fp32 ? Dtype::kFloat32 : dtype;
      const int64_t target_size = static_cast<int64_t>(DtypeSize(target));
      for (int64_t first = 0; first < piece.count; first += kChunkElements) {
        const int64_t n = std::min(kChunkElements, piece.count - first);
        const size_t src_offset = RowBytes(t.type, first);
        const size_t src_bytes = RowBytes(t.type, n);
        INFERD_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done[buf]));
        std::memcpy(pinned[buf], static_cast<const char*>(t.data) + src_offset, src_bytes);
        char* dst = static_cast<char*>(piece.dst) + first * target_size;
        if (t.type == WeightType::kF32 && target == Dtype::kFloat32) {
          INFERD_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, pinned[buf], src_bytes, cudaMemcpyHostToDevice, stream));
        } else {
          INFERD_CUDA_RETURN_IF_ERROR(
              cudaMemcpyAsync(staging[buf], pinned[buf], src_bytes, cudaMemcpyHostToDevice, stream));
          INFERD_CUDA_RETURN_IF_ERROR(LaunchConvertWeights(StoredTypeOf(t.type), staging[buf], n, target, dst, stream));
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
  INFERD_RETURN_IF_ERROR(w->Allocate(nullptr, &pieces));

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
      if (piece.kind != Piece::Kind::kMatrix) {
        // Norm weights are 1, as MakeDummyWeights sets them; biases 0.
        const float value = piece.kind == Piece::Kind::kNorm ? 1.0f : 0.0f;
        INFERD_CUDA_RETURN_IF_ERROR(LaunchFillFloat(static_cast<float*>(piece.dst), piece.count, value, stream));
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

// A Llama-family model's weights as typed tensor views, held in the dtype they
// are stored in (a bf16 checkpoint stays bf16 in memory): the bytes live in
// buffers or file mappings that `owners` keeps alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "engine/model/model_config.h"

namespace inferd {

enum class WeightType {
  kF32,
  kF16,
  kBF16,
  // GGUF's Q8_0: each row is cols/32 blocks of {fp16 scale d; int8 q[32]}
  // (34 bytes), value = d * q.
  kQ8_0,
};

inline constexpr int kQ8_0BlockSize = 32;
inline constexpr int kQ8_0BlockBytes = 34;

// "float32", "float16", "bfloat16", "q8_0" (as GetModelInfo reports dtypes).
std::string_view WeightTypeName(WeightType type);
// Bytes of one row of `cols` elements (cols % 32 == 0 for Q8_0).
size_t RowBytes(WeightType type, int64_t cols);

// How a tensor's elements are ordered in memory.
enum class TensorLayout {
  kRowMajor,
  // Rows in panels of 16, the last panel padded with zero rows. Only the CPU
  // backend's packed copies (PackWeightsForKernels in weight_conversion.h),
  // for its outer-product kernels.
  // - F32, F16, BF16: each panel is [cols][16]: element (r, c) is element
  //   c * 16 + r % 16 of panel r / 16 (PanelElement).
  // - Q8_0: each panel is the 16 rows' blocks of 32 columns in turn, 544
  //   bytes a block (as many as 16 Q8_0 blocks): first the 16 rows' fp16
  //   scales, then the quants of columns 4g .. 4g + 3 for g = 0 .. 7, each
  //   group as [row][4]; a quant q is stored as the byte q + 128 (unsigned:
  //   the operand vpdpbusd reads unsigned). Q8PanelScale and Q8PanelQuant.
  kPanels16,
};

inline constexpr int kPanelRows = 16;

// Where element (r, c) of a float kPanels16 tensor of `cols` columns is, in
// elements from its start.
inline size_t PanelElement(int64_t r, int64_t c, int64_t cols) {
  return static_cast<size_t>((r / kPanelRows) * cols * kPanelRows + c * kPanelRows + r % kPanelRows);
}

// A Q8_0 panel's bytes per block of 32 columns: 16 scales, 16 x 32 quants.
inline constexpr int kQ8PanelBlockBytes = kPanelRows * kQ8_0BlockBytes;

// Byte offsets in a Q8_0 kPanels16 tensor of `cols` columns: the scale of
// row r's block `block`, and the quant of element (r, c).
inline size_t Q8PanelScale(int64_t r, int64_t block, int64_t cols) {
  const int64_t panel_bytes = cols / kQ8_0BlockSize * kQ8PanelBlockBytes;
  return static_cast<size_t>((r / kPanelRows) * panel_bytes + block * kQ8PanelBlockBytes + (r % kPanelRows) * 2);
}
inline size_t Q8PanelQuant(int64_t r, int64_t c, int64_t cols) {
  const int64_t panel_bytes = cols / kQ8_0BlockSize * kQ8PanelBlockBytes;
  return static_cast<size_t>((r / kPanelRows) * panel_bytes + (c / kQ8_0BlockSize) * kQ8PanelBlockBytes +
                             2 * kPanelRows + (c % kQ8_0BlockSize / 4) * 4 * kPanelRows + (r % kPanelRows) * 4 + c % 4);
}

// Row r of a kPanels16 tensor of `type` and `cols` columns (data at
// `panels`) from or to its row-major bytes (RowBytes(type, cols) of them).
void ScatterPanelRow(WeightType type, int64_t cols, int64_t r, const void* row, void* panels);
void GatherPanelRow(WeightType type, int64_t cols, int64_t r, const void* panels, void* row);

// A [rows][cols] tensor (vectors: rows == 1), not owning its bytes.
struct Tensor {
  WeightType type = WeightType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  TensorLayout layout = TensorLayout::kRowMajor;

  bool empty() const { return data == nullptr; }
  // Rows as stored (panels round them up to whole panels).
  int64_t stored_rows() const {
    return layout == TensorLayout::kPanels16 ? (rows + kPanelRows - 1) / kPanelRows * kPanelRows : rows;
  }
  size_t bytes() const { return static_cast<size_t>(stored_rows()) * RowBytes(type, cols); }
  // Row r; only for row-major tensors.
  const void* row(int64_t r) const { return static_cast<const char*>(data) + static_cast<size_t>(r) * RowBytes(type, cols); }
  // The data as floats; only for kF32 tensors (norm weights always are).
  const float* f32() const { return static_cast<const float*>(data); }
};

// Matrices are [out_features][in_features].
struct LayerWeights {
  Tensor rms_att;            // [dim], F32
  Tensor wq;                 // [q_dim][dim]
  Tensor wk;                 // [kv_dim][dim]
  Tensor wv;                 // [kv_dim][dim]
  Tensor bq, bk, bv;         // [q_dim], [kv_dim], [kv_dim] F32; only with attention_bias
  Tensor q_norm, k_norm;     // [head_dim] F32; only with qk_norm
  Tensor wo;                 // [dim][q_dim]
  Tensor rms_ffn;            // [dim], F32
  Tensor w1;                 // [hidden][dim]  (gate)
  Tensor w2;                 // [dim][hidden]  (down)
  Tensor w3;                 // [hidden][dim]  (up)
};

// Asks for transparent huge pages over the 2 MiB-aligned part of
// [data, data + bytes), which must not have been touched yet. Buffers the
// forward pass streams through (weights, the KV cache) then cost a TLB miss
// per 2 MiB instead of per 4 KiB. Advice only: without THP, small pages.
void AdviseHugePages(void* data, size_t bytes);

struct ModelWeights {
  ModelConfig config;
  // The type the matrices are held in (norms and biases are always F32).
  WeightType dtype = WeightType::kF32;
  Tensor token_embedding;    // [vocab][dim]
  std::vector<LayerWeights> layers;
  Tensor rms_final;          // [dim], F32
  Tensor wcls;               // [vocab][dim]; the embedding's view if shared
  // Keeps every tensor's bytes alive (heap buffers, memory maps).
  std::vector<std::shared_ptr<const void>> owners;

  // fp32 weights in one buffer laid out in llama2.c checkpoint order (the
  // order the llama2.c and dummy loaders fill, and the element index the
  // CUDA dummy generator uses), with every tensor pointed at its slot.
  static std::unique_ptr<ModelWeights> AllocateF32(const ModelConfig& config);
  // That buffer (empty for weights not made by AllocateF32).
  float* mutable_f32_storage() { return f32_storage_; }
  size_t f32_storage_size() const { return f32_storage_size_; }
  const float* f32_storage() const { return f32_storage_; }

  // Total bytes of every tensor (what the weights occupy in memory).
  size_t TotalBytes() const;

 private:
  float* f32_storage_ = nullptr;
  size_t f32_storage_size_ = 0;
};

}  // namespace inferd

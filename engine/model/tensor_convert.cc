#include "engine/model/tensor_convert.h"

#include <cstring>

#include "engine/model/float16.h"

namespace inferd {

Tensor ToF32(WeightType type, const void* data, int64_t rows, int64_t cols,
             std::vector<std::shared_ptr<const void>>& owners) {
  const size_t n = static_cast<size_t>(rows * cols);
  auto out = std::make_shared<std::vector<float>>(n);
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    uint16_t u16;
    switch (type) {
      case WeightType::kF32:
        std::memcpy(&(*out)[i], bytes + 4 * i, 4);  // the source may be unaligned
        break;
      case WeightType::kF16:
        std::memcpy(&u16, bytes + 2 * i, 2);
        (*out)[i] = HalfToFloat(u16);
        break;
      case WeightType::kBF16:
        std::memcpy(&u16, bytes + 2 * i, 2);
        (*out)[i] = BFloat16ToFloat(u16);
        break;
      case WeightType::kQ8_0: {
        const unsigned char* block = bytes + (i / kQ8_0BlockSize) * kQ8_0BlockBytes;
        std::memcpy(&u16, block, 2);
        (*out)[i] = HalfToFloat(u16) * static_cast<float>(static_cast<int8_t>(block[2 + i % kQ8_0BlockSize]));
        break;
      }
    }
  }
  Tensor t{WeightType::kF32, out->data(), rows, cols};
  owners.push_back(std::move(out));
  return t;
}

Tensor PermuteRotateHalfToPairs(const Tensor& t, int head_dim,
                                std::vector<std::shared_ptr<const void>>& owners) {
  const size_t row_bytes = RowBytes(t.type, t.cols);
  auto out = std::make_shared<std::vector<unsigned char>>(static_cast<size_t>(t.rows) * row_bytes);
  const int half = head_dim / 2;
  for (int64_t r = 0; r < t.rows; ++r) {
    const int64_t head = r / head_dim, k = r % head_dim;  // pair-order index k = 2i + j
    const int64_t source = head * head_dim + (k % 2) * half + k / 2;
    std::memcpy(out->data() + static_cast<size_t>(r) * row_bytes, t.row(source), row_bytes);
  }
  Tensor permuted{t.type, out->data(), t.rows, t.cols};
  owners.push_back(std::move(out));
  return permuted;
}

}  // namespace inferd

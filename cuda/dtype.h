// The serving dtype of the CUDA backend, as host code sees it (no CUDA
// headers): weights, activations between kernels and the KV cache use it;
// the residual stream, norms and accumulators stay fp32.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace inferd::cuda {

enum class Dtype { kFloat32, kFloat16, kBFloat16 };

inline size_t DtypeSize(Dtype d) { return d == Dtype::kFloat32 ? 4 : 2; }

inline std::string_view DtypeName(Dtype d) {
  switch (d) {
    case Dtype::kFloat32: return "float32";
    case Dtype::kFloat16: return "float16";
    case Dtype::kBFloat16: return "bfloat16";
  }
  return "?";
}

// "bfloat16" | "float16" | "float32" (also "bf16", "fp16", "half", "fp32",
// "float"); false for anything else.
inline bool ParseDtype(std::string_view name, Dtype* out) {
  if (name == "bfloat16" || name == "bf16") {
    *out = Dtype::kBFloat16;
  } else if (name == "float16" || name == "fp16" || name == "half") {
    *out = Dtype::kFloat16;
  } else if (name == "float32" || name == "fp32" || name == "float") {
    *out = Dtype::kFloat32;
  } else {
    return false;
  }
  return true;
}

}  // namespace inferd::cuda

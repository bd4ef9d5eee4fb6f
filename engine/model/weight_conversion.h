// --dtype at load: every matrix of a model re-encoded in one weight type
// (F32, F16, BF16 or Q8_0) with the CPU kernels' own row converters, so the
// backend serves that type. Norms and biases stay F32. And the CPU backend's
// repacking of the matrices for its kernels.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"

namespace inferd::cpu {
struct KernelSet;
}  // namespace inferd::cpu

namespace inferd {

// "auto" (nullopt: serve the weights as stored), "float32", "float16",
// "bfloat16" or "q8_0"; anything else is an InvalidArgument naming the
// choices.
absl::StatusOr<std::optional<WeightType>> ParseWeightDtype(std::string_view name);

struct ConvertedWeights {
  std::shared_ptr<const ModelWeights> weights;
  // One line for the log, e.g. "converted 110.0M weights float32 -> q8_0 in
  // 1.23 s"; empty when every matrix already had the type.
  std::string note;
};

// A copy of `src` with every matrix (embedding, classifier, projections) in
// `type`, in buffers the copy's `owners` hold: nothing of `src` is kept, so
// dropping `src` frees its memory. A tied classifier stays tied. When every
// matrix already has `type`, `src` itself comes back. Q8_0 needs every
// matrix's in_features to be a multiple of 32: otherwise InvalidArgument
// naming the tensor. Runs on `num_threads` threads (< 1: every core).
absl::StatusOr<ConvertedWeights> ConvertWeights(std::shared_ptr<const ModelWeights> src, WeightType type,
                                                int num_threads = 0);

// The weights as `kernels` multiplies them: a copy of `src` (row-major)
// with every matrix of a type that the set has a panel GEMM for packed in
// panels (TensorLayout::kPanels16), an untied token embedding excepted (it
// is only looked up), and everything else copied; `src` itself where
// nothing would be packed. Nothing of `src` is kept, so dropping it frees
// its memory (the peak is both copies). The CPU backend calls it.
absl::StatusOr<std::shared_ptr<const ModelWeights>> PackWeightsForKernels(std::shared_ptr<const ModelWeights> src,
                                                                          const cpu::KernelSet& kernels,
                                                                          int num_threads = 0);

}  // namespace inferd

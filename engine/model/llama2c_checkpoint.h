// Readers for llama2.c's model files: the fp32 checkpoint (7 x int32 header,
// shared or separate classifier) and the int8 "ak42" version-2 export
// (dequantized to fp32 on load). Layouts: models/README.md of shared/.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"

namespace inferd {

// Recognizes the format by its first bytes and reads either. Every error
// names `path` and the problem (truncated, wrong magic, bad dimensions);
// nothing is allocated before the header has been checked against the
// file's size.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadLlama2cModel(const std::string& path);

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadLlama2cFp32(const std::string& path);
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadLlama2cInt8(const std::string& path);

}  // namespace inferd

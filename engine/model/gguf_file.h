// Reader for GGUF (versions 2 and 3): header, metadata key/values of every
// type (arrays included) and tensor infos; the file is memory-mapped and
// tensors point into its data section (aligned to general.alignment).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/model/mapped_file.h"

namespace inferd {

// ggml tensor types this project reads (the rest are refused by name).
enum GgmlType : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ8_0 = 8, kGgmlBF16 = 30 };
// "Q4_K", "F32", ... or "type N" for ids not known here.
std::string GgmlTypeName(uint32_t type);

struct GgufTensor {
  uint32_t type = 0;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the innermost (columns)
  const char* data = nullptr;
  size_t bytes = 0;           // 0 for types whose size is unknown here
};

class GgufFile {
 public:
  // Maps and checks `path`; every error names it and, where one is at
  // fault, the key or tensor (truncation, bad magic or version, unknown
  // value type, data outside the file).
  static absl::StatusOr<GgufFile> Open(const std::string& path);

  // Metadata as JSON values: integers, floats, booleans, strings, arrays.
  const std::map<std::string, nlohmann::json>& metadata() const { return metadata_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const std::shared_ptr<const MappedFile>& mapping() const { return file_; }
  const std::string& path() const { return file_->path(); }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::map<std::string, nlohmann::json> metadata_;
  std::map<std::string, GgufTensor> tensors_;
};

}  // namespace inferd

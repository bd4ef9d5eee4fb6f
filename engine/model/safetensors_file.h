// Reader for the safetensors format: an 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}}, then the tensor bytes.
// The file is memory-mapped; tensors point into the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/mapped_file.h"

namespace inferd {

struct SafetensorsTensor {
  std::string dtype;  // as written: "F32", "BF16", "I32", ...
  std::vector<int64_t> shape;
  const char* data = nullptr;
  size_t bytes = 0;
  const MappedFile* file = nullptr;  // for error messages
};

class SafetensorsFile {
 public:
  // Maps and checks `path`: header length within the file, valid JSON, every
  // tensor's dtype of known width, offsets inside the data section, byte
  // count equal to the shape's, no two tensors overlapping. Errors name the
  // file and, where one is at fault, the tensor.
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const std::shared_ptr<const MappedFile>& mapping() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::map<std::string, SafetensorsTensor> tensors_;
};

}  // namespace inferd

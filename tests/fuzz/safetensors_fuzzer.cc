// libFuzzer: the safetensors header reader (length, JSON, dtypes, offsets).
#include <cstddef>
#include <cstdint>

#include "engine/model/safetensors_file.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inferd::fuzz::InputFile file(data, size);
  absl::StatusOr<inferd::SafetensorsFile> opened = inferd::SafetensorsFile::Open(file.path());
  if (opened.ok()) {
    // Every tensor it accepts lies inside the mapping: touch its bytes.
    volatile uint8_t sum = 0;
    for (const auto& [name, tensor] : opened->tensors()) {
      if (tensor.bytes > 0) sum += static_cast<uint8_t>(tensor.data[0]) + static_cast<uint8_t>(tensor.data[tensor.bytes - 1]);
    }
    (void)sum;
  }
  return 0;
}

// libFuzzer: the GGUF reader (header, metadata key/values, tensor infos),
// then what the loader makes of a file it accepts: the llama config and
// weights, and the tokenizer from metadata.
#include <cstddef>
#include <cstdint>

#include "engine/model/gguf_file.h"
#include "engine/model/gguf_model.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inferd::fuzz::InputFile file(data, size);
  absl::StatusOr<inferd::GgufFile> opened = inferd::GgufFile::Open(file.path());
  if (opened.ok()) {
    (void)inferd::LoadGgufWeights(*opened, /*max_model_len=*/0, /*kv_pool_bytes=*/0);
    (void)inferd::LoadGgufTokenizer(*opened);
    volatile uint8_t sum = 0;
    for (const auto& [name, tensor] : opened->tensors()) {
      if (tensor.bytes > 0) sum += static_cast<uint8_t>(tensor.data[0]) + static_cast<uint8_t>(tensor.data[tensor.bytes - 1]);
    }
    (void)sum;
  }
  return 0;
}

// libFuzzer: the llama2.c checkpoint loader (fp32 and int8 headers, sizes).
#include <cstddef>
#include <cstdint>

#include "engine/model/llama2c_checkpoint.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inferd::fuzz::InputFile file(data, size);
  (void)inferd::LoadLlama2cModel(file.path());
  return 0;
}

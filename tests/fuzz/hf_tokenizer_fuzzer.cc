// libFuzzer: tokenizer.json text (nlohmann's parser, then every model,
// normalizer, pre-tokenizer, decoder and post-processor it accepts); a
// tokenizer it builds must then encode and decode a fixed text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/tokenizer/hf_tokenizer.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json json =
      nlohmann::json::parse(data, data + size, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  absl::StatusOr<std::unique_ptr<inferd::Tokenizer>> tokenizer = inferd::HfTokenizerFromJson(json, nullptr);
  if (!tokenizer.ok()) return 0;
  const std::vector<int> ids = (*tokenizer)->Encode("Hello, wörld! 123  <s> \xF0\x9F\x98\x80 end\n", {});
  (void)(*tokenizer)->Decode(ids);
  return 0;
}

// libFuzzer: the YAML config file (yaml-cpp, then every key's type and range).
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/server_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<inferd::ServerConfig> config = inferd::ServerConfigFromYaml(text, "fuzz.yaml");
  if (config.ok()) (void)inferd::CheckSecuritySettings(*config);
  return 0;
}

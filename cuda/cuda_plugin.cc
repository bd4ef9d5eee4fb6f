// The plugin's one exported symbol (see cuda_plugin.h).
#include "cuda/cuda_plugin.h"

extern "C" __attribute__((visibility("default"))) const inferd::CudaPluginApi* inferd_cuda_plugin_api() {
  static const inferd::CudaPluginApi api{
      .version = inferd::kCudaPluginVersion,
      .device_available = &inferd::CudaDeviceAvailable,
      .create_backend = &inferd::CreateCudaBackend,
  };
  return &api;
}

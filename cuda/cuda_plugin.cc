// The plugin's exported symbols (see cuda_plugin.h).
#include "cuda/cuda_plugin.h"

#include "cuda/plugin_identity.h"

extern "C" __attribute__((visibility("default"))) const char* inferd_cuda_plugin_build_identity() {
  return inferd::kCudaPluginBuildIdentity;
}

extern "C" __attribute__((visibility("default"))) const inferd::CudaPluginApi* inferd_cuda_plugin_api() {
  static const inferd::CudaPluginApi api{
      .device_available = &inferd::CudaDeviceAvailable,
      .create_backend = &inferd::CreateCudaBackend,
  };
  return &api;
}

// Stand-ins for CUDA plugins from other builds, for cuda_plugin_loader_test:
// with STALE_IDENTITY, a plugin of another build identity; without it, a
// plugin from before build identities (only the API entry, as version 1 had).
#include <cstddef>

extern "C" {
#ifdef STALE_IDENTITY
__attribute__((visibility("default"))) const char* inferd_cuda_plugin_build_identity() { return STALE_IDENTITY; }
#endif
// Never called: the loader must refuse the plugin before reaching it.
__attribute__((visibility("default"))) const void* inferd_cuda_plugin_api() { return nullptr; }
}

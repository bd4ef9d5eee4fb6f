// The CUDA plugin loader refuses, in one line, a plugin of another build
// (commit, compiler, CUDA or Abseil differ) or one from before build
// identities, and loads this build's plugin where CUDA is built.
#include "server/cuda_plugin_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace inferd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CudaPluginLoader, RefusesAPluginOfAnotherBuildInOneLine) {
  absl::StatusOr<const CudaPluginApi*> api = LoadCudaPlugin(STALE_CUDA_PLUGIN);
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kUnavailable);
  const std::string message(api.status().message());
  EXPECT_THAT(message, HasSubstr("stale CUDA plugin built from commit 000000000000, gcc 1.0, CUDA 9.0, Abseil 1.0"));
  EXPECT_THAT(message, HasSubstr(CudaPluginLoaderIdentity()));
  EXPECT_THAT(message, HasSubstr(STALE_CUDA_PLUGIN));
  EXPECT_THAT(message, Not(HasSubstr("\n")));
}

TEST(CudaPluginLoader, RefusesAPluginWithoutBuildIdentity) {
  absl::StatusOr<const CudaPluginApi*> api = LoadCudaPlugin(UNVERSIONED_CUDA_PLUGIN);
  ASSERT_FALSE(api.ok());
  EXPECT_EQ(api.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(api.status().message()), HasSubstr("stale CUDA plugin (no build identity)"));
}

TEST(CudaPluginLoader, MissingFileSaysBuiltWithoutCuda) {
  absl::StatusOr<const CudaPluginApi*> api = LoadCudaPlugin("/nonexistent/libinferd_cuda.so");
  EXPECT_EQ(api.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(api.status().message()), HasSubstr("built without CUDA"));
}

TEST(CudaPluginLoader, IdentityNamesCommitCompilerCudaAndAbseil) {
  const std::string identity = CudaPluginLoaderIdentity();
  EXPECT_THAT(identity, HasSubstr("commit "));
  EXPECT_THAT(identity, HasSubstr(", CUDA "));
  EXPECT_THAT(identity, HasSubstr(", Abseil "));
  EXPECT_THAT(identity, Not(HasSubstr("commit ,")));
}

#ifdef REAL_CUDA_PLUGIN
// This build's plugin carries this build's identity (no GPU needed: nothing
// runs on a device until a backend is created).
TEST(CudaPluginLoader, LoadsThisBuildsPlugin) {
  absl::StatusOr<const CudaPluginApi*> api = LoadCudaPlugin(REAL_CUDA_PLUGIN);
  ASSERT_TRUE(api.ok()) << api.status();
  EXPECT_NE((*api)->device_available, nullptr);
  EXPECT_NE((*api)->create_backend, nullptr);
}
#endif

}  // namespace
}  // namespace inferd

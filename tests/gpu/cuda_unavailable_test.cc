// Without a usable CUDA device (or without CUDA in the build), the CUDA
// backend's entry points say why and refuse cleanly: no crash, no hang.
// Built in every configuration, against the real backend or the fallback.
#include <gtest/gtest.h>

#include <string>

#include "cuda/cuda_backend.h"
#include "engine/model/dummy_weights.h"

namespace inferd {
namespace {

TEST(CudaUnavailable, DeviceCheckAndFactoriesGiveTheReason) {
  std::string why;
  if (CudaDeviceAvailable(&why)) GTEST_SKIP() << "a usable CUDA device is present";
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(why.find('\n'), std::string::npos) << why;

  absl::StatusOr<ModelConfig> config = DummyPresetConfig("tiny");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights = MakeDummyWeights(*config, 1);
  ASSERT_TRUE(weights.ok()) << weights.status();

  CudaBackendOptions options;
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      CreateCudaBackend(std::shared_ptr<const ModelWeights>(*std::move(weights)), options);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable) << backend.status();
  EXPECT_EQ(backend.status().message(), why);

  backend = CreateCudaBackendWithDummyWeights(*config, 1, options);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable) << backend.status();
  EXPECT_EQ(backend.status().message(), why);
}

}  // namespace
}  // namespace inferd

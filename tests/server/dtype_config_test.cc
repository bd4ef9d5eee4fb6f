// The `dtype`, `kv_cache_dtype` and `cpu_threads` keys of the YAML config (and their flags):
// every value --dtype takes, and a clear error for the rest.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/backend_factory.h"
#include "server/server_config.h"

namespace inferd {
namespace {

using ::testing::HasSubstr;

TEST(DtypeConfig, YamlTakesEveryWeightType) {
  for (const char* dtype : {"auto", "float32", "float16", "bfloat16", "q8_0"}) {
    auto config = ServerConfigFromYaml(std::string("dtype: ") + dtype + "\ncpu_threads: 2\n", "inferd.yaml");
    ASSERT_TRUE(config.ok()) << dtype << ": " << config.status();
    EXPECT_EQ(config->dtype, dtype);
    EXPECT_EQ(config->cpu_threads, 2);
  }
  auto defaults = ServerConfigFromYaml("", "inferd.yaml");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->dtype, "auto");
  EXPECT_EQ(defaults->cpu_threads, 0);
  EXPECT_EQ(defaults->kv_cache_dtype, "auto");
  for (const char* kv : {"auto", "float32", "float16"}) {
    auto config = ServerConfigFromYaml(std::string("kv_cache_dtype: ") + kv + "\n", "inferd.yaml");
    ASSERT_TRUE(config.ok()) << kv << ": " << config.status();
    EXPECT_EQ(config->kv_cache_dtype, kv);
  }
}

TEST(DtypeConfig, YamlRefusesOtherValuesNamingTheKey) {
  auto bad = ServerConfigFromYaml("dtype: int4\n", "inferd.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("dtype"));
  EXPECT_THAT(bad.status().message(), HasSubstr("q8_0"));
  auto kv = ServerConfigFromYaml("kv_cache_dtype: q8_0\n", "inferd.yaml");
  ASSERT_FALSE(kv.ok());
  EXPECT_THAT(kv.status().message(), HasSubstr("kv_cache_dtype"));
  auto threads = ServerConfigFromYaml("cpu_threads: -1\n", "inferd.yaml");
  ASSERT_FALSE(threads.ok());
  EXPECT_THAT(threads.status().message(), HasSubstr("cpu_threads"));
}

// What the loader is asked to convert to: the CPU converts, CUDA loads as
// stored and refuses q8_0.
TEST(DtypeConfig, LoadDtypePerBackend) {
  EXPECT_EQ(*LoadDtype("cpu", "auto"), std::nullopt);
  EXPECT_EQ(*LoadDtype("cpu", "q8_0"), WeightType::kQ8_0);
  EXPECT_EQ(*LoadDtype("cpu", "bfloat16"), WeightType::kBF16);
  EXPECT_EQ(*LoadDtype("cuda", "bfloat16"), std::nullopt);
  auto q8_cuda = LoadDtype("cuda", "q8_0");
  ASSERT_FALSE(q8_cuda.ok());
  EXPECT_THAT(q8_cuda.status().message(), HasSubstr("q8_0 is served by --backend cpu"));
  auto unknown = LoadDtype("cpu", "int4");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace inferd

#include "server/api_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace inferd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string WriteKeys(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / name).string();
  std::ofstream(path + ".tmp", std::ios::binary) << text;
  std::filesystem::rename(path + ".tmp", path);
  return path;
}

TEST(ApiKeysTest, ParsesKeysTenantsCommentsAndBlankLines) {
  const std::string path = WriteKeys("keys1.txt", "# header\n\nk-one  alpha\n  k-two\t# no tenant\r\nk-three beta # c\n");
  absl::StatusOr<std::unique_ptr<ApiKeys>> keys = ApiKeys::Load(path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ((*keys)->TenantOf("k-one"), "alpha");
  EXPECT_EQ((*keys)->TenantOf("k-two"), "default");
  EXPECT_EQ((*keys)->TenantOf("k-three"), "beta");
  EXPECT_EQ((*keys)->TenantOf("k-on"), std::nullopt);
  EXPECT_EQ((*keys)->TenantOf("k-one "), std::nullopt);
  EXPECT_EQ((*keys)->TenantOf(""), std::nullopt);
  EXPECT_EQ((*keys)->TenantOf("# header"), std::nullopt);
}

TEST(ApiKeysTest, ErrorsNameTheLineButNeverTheKey) {
  absl::StatusOr<std::unique_ptr<ApiKeys>> keys =
      ApiKeys::Load(WriteKeys("keys2.txt", "k-good a\nsecret-key tenant extra\n"));
  ASSERT_FALSE(keys.ok());
  EXPECT_THAT(keys.status().message(), HasSubstr("keys2.txt:2: expected a key and at most one tenant name"));
  EXPECT_THAT(keys.status().message(), Not(HasSubstr("secret-key")));
  EXPECT_THAT(ApiKeys::Load(WriteKeys("keys3.txt", "# only comments\n")).status().message(),
              HasSubstr("holds no API key"));
  EXPECT_FALSE(ApiKeys::Load("/nonexistent/keys").ok());
}

TEST(ApiKeysTest, ReloadKeepsTheOldKeysWhenTheNewFileIsBad) {
  const std::string path = WriteKeys("keys4.txt", "k-old\n");
  absl::StatusOr<std::unique_ptr<ApiKeys>> keys = ApiKeys::Load(path);
  ASSERT_TRUE(keys.ok());
  WriteKeys("keys4.txt", "\n");
  EXPECT_FALSE((*keys)->Reload().ok());
  EXPECT_EQ((*keys)->TenantOf("k-old"), "default");
  WriteKeys("keys4.txt", "k-new n\n");
  EXPECT_TRUE((*keys)->Reload().ok());
  EXPECT_EQ((*keys)->TenantOf("k-new"), "n");
  EXPECT_EQ((*keys)->TenantOf("k-old"), std::nullopt);
}

TEST(ApiKeysTest, BearerTokens) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer  abc "), "abc");
  EXPECT_EQ(BearerToken("Basic abc"), std::nullopt);
  EXPECT_EQ(BearerToken("Bearer "), std::nullopt);
  EXPECT_EQ(BearerToken("abc"), std::nullopt);
}

}  // namespace
}  // namespace inferd

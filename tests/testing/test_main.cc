// main() of every test binary: like gtest_main, but each process gets a
// temporary folder of its own (TEST_TMPDIR, which ::testing::TempDir()
// returns), so that test cases ctest runs in parallel never share a file.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  std::string dir = (std::filesystem::temp_directory_path() / "inferd-test-XXXXXX").string();
  const bool own_dir = mkdtemp(dir.data()) != nullptr;
  if (own_dir) setenv("TEST_TMPDIR", dir.c_str(), /*overwrite=*/1);
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  if (own_dir) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return result;
}

#include "engine/tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace inferd {
namespace {

TEST(Utf8, AcceptsWellFormedText) {
  for (const char* s : {"", "plain ascii", "\xC3\xA9t\xC3\xA9", "\xE4\xB8\xAD\xE6\x96\x87", "\xF0\x9F\x98\x80",
                        "\xEF\xBF\xBD", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_TRUE(IsValidUtf8(s)) << s;
  }
  EXPECT_TRUE(IsValidUtf8(std::string_view("a\0b", 3)));
}

TEST(Utf8, RejectsMalformedText) {
  for (const char* s : {"\x80", "\xBF", "\xC0\x80", "\xC1\xBF",          // stray continuation, overlong
                        "\xE0\x80\x80", "\xF0\x80\x80\x80",              // overlong
                        "\xED\xA0\x80",                                  // surrogate
                        "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF",  // above U+10FFFF
                        "\xC3", "\xE4\xB8", "\xF0\x9F\x98",              // truncated
                        "\xE4\xB8" "a", "ok\xFE"}) {
    EXPECT_FALSE(IsValidUtf8(s)) << ::testing::PrintToString(std::string(s));
  }
}

}  // namespace
}  // namespace inferd

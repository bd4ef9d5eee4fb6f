#include "server/request_ids.h"

#include <gtest/gtest.h>

#include "server/log_text.h"

namespace inferd {
namespace {

TEST(RequestIdsTest, ScopedIdsSplitBackIntoTheirParts) {
  for (const auto& [scope, id] : std::vector<std::pair<std::string, std::string>>{
           {"peer:ipv4:127.0.0.1:5000", "job-1"}, {"tenant:alpha", ""}, {"", "x"}, {"a:b", "12:cd"}}) {
    const std::string scoped = ScopedRequestId(scope, id);
    EXPECT_EQ(RequestScope(scoped), scope);
    EXPECT_EQ(ClientRequestId(scoped), id);
  }
}

// Whatever callers put in their scope or id, two different (scope, id)
// pairs never make the same engine id.
TEST(RequestIdsTest, DifferentCallersNeverCollide) {
  EXPECT_NE(ScopedRequestId("tenant:a", "b:c"), ScopedRequestId("tenant:a:b", "c"));
  EXPECT_NE(ScopedRequestId("1", "2"), ScopedRequestId("12", ""));
  EXPECT_NE(ScopedRequestId("", "1:x"), ScopedRequestId("x", ""));
}

TEST(RequestIdsTest, AnUnscopedIdIsAllClientId) {
  EXPECT_EQ(ClientRequestId("req-1"), "req-1");
  EXPECT_EQ(RequestScope("req-1"), "");
  EXPECT_EQ(ClientRequestId("99:short"), "99:short");  // the length does not fit: not scoped
}

TEST(LogTextTest, EscapesWhatCouldForgeALine) {
  EXPECT_EQ(LogSafe("plain id-1"), "plain id-1");
  EXPECT_EQ(LogSafe("a\nb\r\x1b[31m"), "a\\nb\\r\\x1b[31m");
  EXPECT_EQ(LogSafe("\xff\xfe"), "\\xff\\xfe");
}

TEST(LogTextTest, CapsLongFields) {
  const std::string logged = LogSafe(std::string(10 << 20, 'm'));
  EXPECT_LT(logged.size(), 300u);
  EXPECT_NE(logged.find("...(+10485504 bytes)"), std::string::npos) << logged;
}

}  // namespace
}  // namespace inferd

#include "engine/tokenizer/regex.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace inferd {
namespace {

std::vector<std::string> Matches(const Regex& regex, const std::string& text) {
  std::vector<std::string> out;
  regex.ForEachMatch(text, [&](const Regex::Match& m) { out.push_back(text.substr(m.begin, m.end - m.begin)); });
  return out;
}

TEST(Regex, UnicodeClassesAndLookahead) {
  absl::StatusOr<Regex> regex = Regex::Compile(R"(\p{L}+|\p{N}|\s+(?!\S)|\s+)");
  ASSERT_TRUE(regex.ok()) << regex.status();
  // \s is Unicode's (UCP): the ideographic space U+3000 is whitespace.
  EXPECT_EQ(Matches(*regex, "héllo  42\xE3\x80\x80x"),
            (std::vector<std::string>{"héllo", " ", " ", "4", "2", "\xE3\x80\x80", "x"}));
}

TEST(Regex, QuoteMatchesLiterally) {
  absl::StatusOr<Regex> regex = Regex::Compile(Regex::Quote("a.b\\E(c"));
  ASSERT_TRUE(regex.ok()) << regex.status();
  EXPECT_EQ(Matches(*regex, "axb a.b\\E(c"), (std::vector<std::string>{"a.b\\E(c"}));
}

TEST(Regex, BadPatternNamesItself) {
  absl::StatusOr<Regex> regex = Regex::Compile("(open");
  ASSERT_FALSE(regex.ok());
  EXPECT_NE(regex.status().message().find("(open"), std::string::npos) << regex.status();
}

// A backtracking-heavy pattern over a long text overflows the JIT's fixed
// stack; the search falls back to the interpreter instead of reporting no
// match.
TEST(Regex, DeepBacktrackingStillMatches) {
  absl::StatusOr<Regex> regex = Regex::Compile("(?:(x)|y)*z");
  ASSERT_TRUE(regex.ok()) << regex.status();
  std::string text;
  for (int i = 0; i < 200000; ++i) text += "xy";
  text += "z";
  const std::vector<std::string> matches = Matches(*regex, text);
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0].size(), text.size());
}

}  // namespace
}  // namespace inferd

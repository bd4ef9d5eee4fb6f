#include "engine/tokenizer/clean_up_spaces.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace inferd {
namespace {

TEST(CleanUpSpaces, TransformersRules) {
  EXPECT_EQ(CleanUpTokenizationSpaces("Hello , world . Really ? Yes !"), "Hello, world. Really? Yes!");
  EXPECT_EQ(CleanUpTokenizationSpaces("I 'm sure they 've said we 're done , it 's his"),
            "I'm sure they've said we're done, it's his");
  EXPECT_EQ(CleanUpTokenizationSpaces("do n't"), "don't");
  EXPECT_EQ(CleanUpTokenizationSpaces("rock ' n roll"), "rock'n roll");
  // " 't" is not a rule; two spaces keep one.
  EXPECT_EQ(CleanUpTokenizationSpaces("isn 't  ."), "isn 't .");
  // Passes run one after another: removing " ' " makes " n't" here.
  EXPECT_EQ(CleanUpTokenizationSpaces("x n ' t"), "xn't");
}

// What IncrementalDetokenizer does with text arriving in pieces.
std::string CleanInPieces(const std::string& text, std::mt19937* rng) {
  std::string held;
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::uniform_int_distribution<size_t>(1, 3)(*rng);
    held += text.substr(i, n);
    i += n;
    const size_t cut = CleanUpSafePrefix(held);
    out += CleanUpTokenizationSpaces(held.substr(0, cut));
    held.erase(0, cut);
  }
  return out + CleanUpTokenizationSpaces(held);
}

TEST(CleanUpSpaces, PiecesAddUpToTheWhole) {
  std::mt19937 rng(7);
  const std::string alphabet = " 'ntmsvrel.,?!a";
  for (int trial = 0; trial < 20000; ++trial) {
    std::string text;
    const int length = std::uniform_int_distribution<int>(0, 14)(rng);
    for (int i = 0; i < length; ++i) {
      text += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    }
    ASSERT_EQ(CleanInPieces(text, &rng), CleanUpTokenizationSpaces(text)) << "\"" << text << "\"";
  }
}

TEST(CleanUpSpaces, SafePrefixReleasesText) {
  // Text is not held back for ever: everything before the last space that
  // follows an ordinary character can go.
  EXPECT_EQ(CleanUpSafePrefix("Once upon a time"), std::string("Once upon a").size());
  EXPECT_EQ(CleanUpSafePrefix("word"), 0u);
  EXPECT_EQ(CleanUpSafePrefix("a ' "), 1u);
}

}  // namespace
}  // namespace inferd

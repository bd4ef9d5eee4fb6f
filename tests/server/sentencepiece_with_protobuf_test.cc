// libsentencepiece carries its own protobuf-lite; in a process that also has
// libprotobuf (every server process: gRPC) linking it directly crashed before
// main(). Through the module (sentencepiece_library.h) both work side by side.
#include <string>
#include <vector>

#include "engine/tokenizer/sentencepiece_tokenizer.h"
#include "gtest/gtest.h"
#include "inferd/v1/inference.pb.h"

namespace inferd {
namespace {

TEST(SentencePieceWithProtobuf, BothWorkInOneProcess) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizer builds load the SentencePiece module without RTLD_DEEPBIND, which this needs "
                  "(engine/tokenizer/sentencepiece_library.cc)";
#endif
  v1::TokenizeRequest request;
  request.set_text("Hello world");
  const std::string wire = request.SerializeAsString();

  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      LoadSentencePieceModel(std::string(INFERD_SHARED_DIR) + "/models/llama2-tokenizer/tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("Hello world", true), (std::vector<int>{1, 15043, 3186}));

  v1::TokenizeRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.text(), "Hello world");
}

}  // namespace
}  // namespace inferd

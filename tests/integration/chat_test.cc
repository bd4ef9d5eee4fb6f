// `messages` prompts end to end: the real `inferd serve` binary on the
// bundled model with --chat-template models/stories260K/story_chat.jinja,
// over loopback gRPC; and the refusals (no template, a template that raises,
// a template that does not parse).
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "inferd/v1/inference.grpc.pb.h"
#include "tests/testing/server_process.h"

namespace inferd {
namespace {

using ::testing::HasSubstr;
using testing::ServerOptions;
using testing::ServerProcess;

const std::string kStoryTemplate = std::string(INFERD_SOURCE_DIR) + "/models/stories260K/story_chat.jinja";

v1::GenerateRequest Greedy(int max_tokens) {
  v1::GenerateRequest request;
  request.mutable_sampling()->set_temperature(0);
  request.mutable_stopping()->set_max_tokens(max_tokens);
  return request;
}

void AddMessage(v1::GenerateRequest* request, const std::string& role, const std::string& content) {
  v1::ChatMessage* message = request->mutable_messages()->add_messages();
  message->set_role(role);
  message->set_content(content);
}

grpc::Status Generate(ServerProcess& server, const v1::GenerateRequest& request, v1::GenerateResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return v1::Inference::NewStub(server.channel())->Generate(&context, request, response);
}

class ChatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<ServerProcess>> started =
        ServerProcess::Start(ServerOptions{.flags = {"--chat-template", kStoryTemplate}, .metrics_port = -1});
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = started->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static ServerProcess* server_;
};
ServerProcess* ChatTest::server_ = nullptr;

TEST_F(ChatTest, MessagesGenerateWhatTheRenderedTextGenerates) {
  // story_chat.jinja renders these as "<s>Once upon a time there was a cat":
  // the same prompt, BOS once, as the text form.
  v1::GenerateRequest chat = Greedy(40);
  AddMessage(&chat, "system", "Once upon a time");
  AddMessage(&chat, "user", "  there was a cat ");
  v1::GenerateRequest text = Greedy(40);
  text.set_text("Once upon a time there was a cat");

  v1::GenerateResponse from_chat, from_text;
  ASSERT_TRUE(Generate(*server_, chat, &from_chat).ok());
  ASSERT_TRUE(Generate(*server_, text, &from_text).ok());
  EXPECT_EQ(from_chat.usage().prompt_tokens(), from_text.usage().prompt_tokens());
  EXPECT_EQ(std::vector<int>(from_chat.token_ids().begin(), from_chat.token_ids().end()),
            std::vector<int>(from_text.token_ids().begin(), from_text.token_ids().end()));
  EXPECT_EQ(from_chat.text(), from_text.text());
  EXPECT_FALSE(from_chat.text().empty());

  // The stream delivers the same tokens.
  grpc::ClientContext context;
  auto reader = v1::Inference::NewStub(server_->channel())->GenerateStream(&context, chat);
  std::vector<int> streamed;
  for (v1::GenerateResponse message; reader->Read(&message);) {
    streamed.insert(streamed.end(), message.token_ids().begin(), message.token_ids().end());
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(streamed, std::vector<int>(from_chat.token_ids().begin(), from_chat.token_ids().end()));
}

TEST_F(ChatTest, TemplateErrorsAreInvalidArgumentWithTheTemplatesMessage) {
  v1::GenerateRequest request = Greedy(4);
  AddMessage(&request, "user", "hi");
  AddMessage(&request, "tool", "{}");
  v1::GenerateResponse response;
  const grpc::Status status = Generate(*server_, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("raise_exception: story_chat.jinja: unknown role \"tool\""));
  EXPECT_THAT(status.error_message(), HasSubstr("chat template: line 9, column"));
}

TEST_F(ChatTest, EmptyConversationsAndBadTextAreInvalidArgument) {
  v1::GenerateRequest empty = Greedy(4);
  empty.mutable_messages();
  v1::GenerateResponse response;
  grpc::Status status = Generate(*server_, empty, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("messages: the conversation is empty"));

  // Invalid UTF-8 in a message: our own parser names the field (a generated
  // stub would refuse to send it, so the bytes go raw).
  v1::GenerateRequest bad = Greedy(4);
  AddMessage(&bad, "user", "ok");
  std::string wire = bad.SerializeAsString();
  const size_t at = wire.find("ok");
  ASSERT_NE(at, std::string::npos);
  wire[at] = static_cast<char>(0xFF);
  status = testing::RawUnaryCall(server_->channel(), "/inferd.v1.Inference/Generate", wire, nullptr);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("messages.messages[0].content: not valid UTF-8"));
}

TEST(ChatWithoutTemplateTest, MessagesAreRefusedNamingTheMissingTemplate) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(ServerOptions{.flags = {}, .metrics_port = -1});
  ASSERT_TRUE(server.ok()) << server.status();
  v1::GenerateRequest request = Greedy(4);
  AddMessage(&request, "user", "hi");
  v1::GenerateResponse response;
  const grpc::Status status = Generate(**server, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("no chat template"));
  EXPECT_THAT(status.error_message(), HasSubstr("--chat-template"));
}

TEST(ChatTemplateAtStartTest, ATemplateOutsideTheSubsetStopsTheServerWithLineAndColumn) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / "bad_template.jinja").string();
  std::ofstream(path) << "{{ bos_token }}\n{% for m in messages %}{{ m.content | frobnicate }}{% endfor %}";
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      ServerOptions{.flags = {"--chat-template", path}, .metrics_port = -1, .ready_timeout = std::chrono::seconds(10)});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("bad_template.jinja: line 2, column 39: unknown filter 'frobnicate'"));
}

}  // namespace
}  // namespace inferd

// Where a model's chat template comes from (tokenizer_config.json as a
// string or a list of named templates, chat_template.jinja, --chat-template)
// and how broken ones are refused at load; and EncodeChatPrompt's one BOS.
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/tokenizer/llama2c_tokenizer.h"
#include "server/chat_prompt.h"
#include "server/chat_template/chat_template_loader.h"

namespace inferd {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A fresh model folder in this process's temporary directory.
fs::path ModelDir() {
  static int counter = 0;
  const fs::path dir = fs::path(::testing::TempDir()) / ("model" + std::to_string(counter++));
  fs::create_directories(dir);
  return dir;
}

void Write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

ChatMessage Message(std::string role, std::string content) {
  ChatMessage message;
  message.role = std::move(role);
  message.content = std::move(content);
  return message;
}

SpecialTokens Tokens(std::string bos, std::string eos) {
  SpecialTokens tokens;
  tokens.bos_token = std::move(bos);
  tokens.eos_token = std::move(eos);
  return tokens;
}

std::string ErrorOf(const absl::StatusOr<std::optional<ChatTemplate>>& loaded) {
  return loaded.ok() ? "(loaded)" : std::string(loaded.status().message());
}

TEST(ChatTemplateLoader, ReadsTheLlama3TokenizerConfig) {
  auto loaded = LoadChatTemplate(std::string(INFERD_SHARED_DIR) + "/models/tokenizers/llama3", "", "");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->special_tokens().bos_token, "<|begin_of_text|>");
  EXPECT_EQ((*loaded)->special_tokens().eos_token, "<|end_of_text|>");
  EXPECT_THAT((*loaded)->origin(), HasSubstr("llama3/tokenizer_config.json"));
}

TEST(ChatTemplateLoader, NoTemplateAnywhereIsNotAnError) {
  const fs::path dir = ModelDir();
  Write(dir / "tokenizer_config.json", R"({"bos_token": "<s>"})");
  auto loaded = LoadChatTemplate(dir.string(), "", "");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  auto bundled = LoadChatTemplate(std::string(INFERD_SOURCE_DIR) + "/models/stories260K/stories260K.bin", "", "");
  ASSERT_TRUE(bundled.ok()) << bundled.status();
  EXPECT_FALSE(bundled->has_value());
  auto dummy = LoadChatTemplate("dummy:tiny", "", "");
  ASSERT_TRUE(dummy.ok()) << dummy.status();
  EXPECT_FALSE(dummy->has_value());
}

TEST(ChatTemplateLoader, PicksTheDefaultOfNamedTemplates) {
  const fs::path dir = ModelDir();
  Write(dir / "tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ bos_token }}"}],
            "bos_token": {"content": "<s>", "lstrip": false}})");
  Write(dir / "model.bin", "");
  auto loaded = LoadChatTemplate((dir / "model.bin").string(), "", "");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->source(), "D{{ bos_token }}");
  EXPECT_EQ((*loaded)->special_tokens().bos_token, "<s>");
}

TEST(ChatTemplateLoader, TheFileFlagOverridesTheConfigAndKeepsItsTokens) {
  const fs::path dir = ModelDir();
  Write(dir / "tokenizer_config.json", R"({"chat_template": "config", "eos_token": "</s>"})");
  Write(dir / "mine.jinja", "{{ messages[0].content }}{{ eos_token }}\n");
  auto loaded = LoadChatTemplate(dir.string(), "", (dir / "mine.jinja").string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  auto text = RenderChat(**loaded, {Message("user", "hi")}, true);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "hi</s>");
}

TEST(ChatTemplateLoader, FindsChatTemplateJinjaBesideTheTokenizer) {
  const fs::path model = ModelDir();
  const fs::path tokenizer = ModelDir();
  Write(tokenizer / "tokenizer.json", "{}");
  Write(tokenizer / "chat_template.jinja", "jinja file");
  auto loaded = LoadChatTemplate(model.string(), (tokenizer / "tokenizer.json").string(), "");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->source(), "jinja file");
}

TEST(ChatTemplateLoader, BrokenInputsFailAtLoadNamingTheFile) {
  const fs::path dir = ModelDir();
  Write(dir / "tokenizer_config.json", "{not json");
  EXPECT_THAT(ErrorOf(LoadChatTemplate(dir.string(), "", "")), HasSubstr("tokenizer_config.json: not a JSON object"));

  Write(dir / "tokenizer_config.json", R"({"chat_template": [{"name": "rag", "template": "x"}]})");
  EXPECT_THAT(ErrorOf(LoadChatTemplate(dir.string(), "", "")),
              HasSubstr("chat_template has no template named \"default\" (it has: rag)"));

  Write(dir / "tokenizer_config.json", R"({"chat_template": 7})");
  EXPECT_THAT(ErrorOf(LoadChatTemplate(dir.string(), "", "")), HasSubstr("neither a string nor a list"));

  Write(dir / "tokenizer_config.json", R"({"chat_template": "ok\n{{ messages | shuffle }}"})");
  EXPECT_THAT(ErrorOf(LoadChatTemplate(dir.string(), "", "")),
              HasSubstr("tokenizer_config.json: line 2, column 15: unknown filter 'shuffle'"));

  EXPECT_THAT(ErrorOf(LoadChatTemplate(dir.string(), "", (dir / "missing.jinja").string())),
              HasSubstr("missing.jinja: cannot read the chat template (--chat-template)"));
}

TEST(ChatTemplate, TextPartsAreJoinedForStringOnlyTemplates) {
  auto plain = ChatTemplate::Create("{{ messages[0].content }}", "test", {});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->accepts_content_parts());
  ChatMessage parts = Message("user", "");
  parts.text_parts = std::vector<std::string>{"a", "b"};
  EXPECT_EQ(*RenderChat(*plain, {parts}, true), "a\nb");

  auto iterating = ChatTemplate::Create("{% for p in messages[0]['content'] %}<{{ p.text }}>{% endfor %}", "test", {});
  ASSERT_TRUE(iterating.ok()) << iterating.status();
  EXPECT_TRUE(iterating->accepts_content_parts());
  EXPECT_EQ(*RenderChat(*iterating, {parts}, true), "<a><b>");
}

TEST(ChatTemplate, RenderChatRefusesEmptyConversationsAndRoles) {
  auto t = ChatTemplate::Create("x", "test", {});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(RenderChat(*t, {}, true).status().message(), "messages: the conversation is empty");
  EXPECT_EQ(RenderChat(*t, {Message("user", "x"), Message("", "y")}, true).status().message(), "messages[1].role: empty");
}

class EncodeChatPromptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Llama2cTokenizer> tokenizer =
        Llama2cTokenizer::Load(std::string(INFERD_SOURCE_DIR) + "/models/stories260K/tok512.bin", 512);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_.emplace(*std::move(tokenizer));
  }
  std::optional<Llama2cTokenizer> tokenizer_;
};

TEST_F(EncodeChatPromptTest, ATemplateThatWritesBosGetsExactlyOneBosId) {
  auto t = ChatTemplate::Create("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", "test",
                                Tokens("<s>", "</s>"));
  ASSERT_TRUE(t.ok());
  auto ids = EncodeChatPrompt(&*t, {Message("user", "Once upon a time")}, true, *tokenizer_);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, tokenizer_->Encode("Once upon a time", /*add_bos=*/true));
}

TEST_F(EncodeChatPromptTest, ATemplateWithoutBosGetsNone) {
  auto t = ChatTemplate::Create("{% for m in messages %}{{ m.content }}{% endfor %}", "test", Tokens("<s>", "</s>"));
  ASSERT_TRUE(t.ok());
  auto ids = EncodeChatPrompt(&*t, {Message("user", "Once upon a time")}, true, *tokenizer_);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, tokenizer_->Encode("Once upon a time", /*add_bos=*/false));
  EXPECT_NE(ids->front(), Llama2cTokenizer::kBosId);
}

TEST_F(EncodeChatPromptTest, NoTemplateIsInvalidArgumentSayingWhatToDo) {
  auto ids = EncodeChatPrompt(nullptr, {Message("user", "hi")}, true, *tokenizer_);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ids.status().message(), HasSubstr("no chat template"));
  EXPECT_THAT(ids.status().message(), HasSubstr("--chat-template"));
}

}  // namespace
}  // namespace inferd

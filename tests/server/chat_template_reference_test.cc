// Every committed chat template over every committed conversation renders
// exactly as @huggingface/jinja rendered it
// (tests/chat_template/reference/generate_expected.mjs wrote the JSON), and
// the features template matches too. Node is not needed here.
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/chat_template/chat_template.h"
#include "server/chat_template/chat_template_loader.h"

namespace inferd {
namespace {

using Json = nlohmann::ordered_json;

const std::string kDataDir = std::string(INFERD_SOURCE_DIR) + "/tests/chat_template/data";

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const Json& Expected() {
  static const Json* json = new Json(Json::parse(ReadText(kDataDir + "/expected_renders.json")));
  return *json;
}

std::vector<ChatMessage> Messages(const Json& list) {
  std::vector<ChatMessage> out;
  for (const Json& m : list) {
    ChatMessage message;
    message.role = m["role"].get<std::string>();
    if (m["content"].is_string()) {
      message.content = m["content"].get<std::string>();
    } else {
      message.text_parts.emplace();
      for (const Json& part : m["content"]) message.text_parts->push_back(part["text"].get<std::string>());
    }
    out.push_back(std::move(message));
  }
  return out;
}

SpecialTokens Special(const Json& json) {
  SpecialTokens special;
  if (json.contains("bos_token")) special.bos_token = json["bos_token"].get<std::string>();
  if (json.contains("eos_token")) special.eos_token = json["eos_token"].get<std::string>();
  if (json.contains("unk_token")) special.unk_token = json["unk_token"].get<std::string>();
  if (json.contains("pad_token")) special.pad_token = json["pad_token"].get<std::string>();
  return special;
}

// The templates as the server loads them: from the tokenizer configs, or
// from a --chat-template file with the special tokens the JSON names.
std::map<std::string, ChatTemplate> LoadTemplates() {
  std::map<std::string, ChatTemplate> out;
  for (const Json& t : Expected()["templates"]) {
    const std::string name = t["name"].get<std::string>();
    absl::StatusOr<std::optional<ChatTemplate>> loaded =
        t.contains("tokenizer_dir")
            ? LoadChatTemplate(std::string(INFERD_SHARED_DIR) + "/models/tokenizers/" + t["tokenizer_dir"].get<std::string>(),
                               "", "")
            : LoadChatTemplate("", "", kDataDir + "/" + t["file"].get<std::string>());
    EXPECT_TRUE(loaded.ok()) << name << ": " << loaded.status();
    if (!loaded.ok() || !loaded->has_value()) {
      ADD_FAILURE() << name << ": no template";
      continue;
    }
    ChatTemplate chat_template = **std::move(loaded);
    const SpecialTokens expected = Special(t["special_tokens"]);
    if (t.contains("tokenizer_dir")) {
      // Read from tokenizer_config.json: the same tokens the generator passed.
      EXPECT_EQ(chat_template.special_tokens().bos_token, expected.bos_token) << name;
      EXPECT_EQ(chat_template.special_tokens().eos_token, expected.eos_token) << name;
      EXPECT_EQ(chat_template.special_tokens().unk_token, expected.unk_token) << name;
      EXPECT_EQ(chat_template.special_tokens().pad_token, expected.pad_token) << name;
    } else {
      chat_template.set_special_tokens(expected);
    }
    EXPECT_EQ(chat_template.accepts_content_parts(), t["content_parts"].get<bool>()) << name;
    out.emplace(name, std::move(chat_template));
  }
  return out;
}

TEST(ChatTemplateReference, EveryConversationRendersAsHuggingFaceJinja) {
  const std::map<std::string, ChatTemplate> templates = LoadTemplates();
  ASSERT_EQ(templates.size(), 4u);
  std::map<std::string, Json> conversations;
  for (const Json& c : Expected()["conversations"]) conversations[c["name"].get<std::string>()] = c;
  int checked = 0;
  for (const Json& render : Expected()["renders"]) {
    const std::string name = render["template"].get<std::string>() + "/" + render["conversation"].get<std::string>();
    const Json& conversation = conversations.at(render["conversation"].get<std::string>());
    std::optional<Json> tools;
    if (conversation.contains("tools")) tools = conversation["tools"];
    const absl::StatusOr<std::string> text =
        RenderChat(templates.at(render["template"].get<std::string>()), Messages(conversation["messages"]),
                   conversation.value("add_generation_prompt", true), tools);
    if (render.contains("error")) {
      ASSERT_FALSE(text.ok()) << name << " rendered, but the reference raised: " << render["error"];
      EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << name;
      EXPECT_NE(text.status().message().find(render["error"].get<std::string>()), std::string::npos)
          << name << ": " << text.status();
    } else {
      ASSERT_TRUE(text.ok()) << name << ": " << text.status();
      EXPECT_EQ(*text, render["text"].get<std::string>()) << name;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 4 * static_cast<int>(conversations.size()));
}

TEST(ChatTemplateReference, FeaturesTemplateRendersAsHuggingFaceJinja) {
  absl::StatusOr<jinja::Template> features =
      jinja::Template::Parse(ReadText(kDataDir + "/" + Expected()["features_template"].get<std::string>()));
  ASSERT_TRUE(features.ok()) << features.status();
  for (const Json& f : Expected()["features"]) {
    const jinja::Value context = jinja::FromJson(f["context"]);
    const absl::StatusOr<std::string> text = features->Render(context.as_dict());
    ASSERT_TRUE(text.ok()) << f["name"] << ": " << text.status();
    EXPECT_EQ(*text, f["text"].get<std::string>()) << f["name"];
  }
}

}  // namespace
}  // namespace inferd

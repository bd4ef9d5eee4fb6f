#include "server/chat_template/chat_template.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace inferd {
namespace {

bool IsContentAccess(const jinja::Expr& e) {
  if (e.kind == jinja::Expr::Kind::kGetAttr) return e.name == "content";
  return e.kind == jinja::Expr::Kind::kGetItem && e.children[1]->kind == jinja::Expr::Kind::kLiteral &&
         e.children[1]->literal.is_string() && e.children[1]->literal.as_string() == "content";
}

// vLLM's detection of "openai"-format templates: a for loop over
// `<something>.content` or `<something>['content']`.
bool IteratesOverContent(const jinja::Body& body) {
  for (const auto& node : body) {
    if (node->kind == jinja::Node::Kind::kFor && IsContentAccess(*node->expr)) return true;
    if (IteratesOverContent(node->body) || IteratesOverContent(node->else_body)) return true;
    for (const auto& branch : node->branches) {
      if (IteratesOverContent(branch.second)) return true;
    }
  }
  return false;
}

jinja::Value MessageValue(const ChatMessage& message, bool pass_parts) {
  jinja::Dict dict;
  dict.Set("role", jinja::Value(message.role));
  if (!message.text_parts.has_value()) {
    dict.Set("content", jinja::Value(message.content));
  } else if (pass_parts) {
    jinja::List parts;
    for (const std::string& text : *message.text_parts) {
      jinja::Dict part;
      part.Set("type", jinja::Value("text"));
      part.Set("text", jinja::Value(text));
      parts.push_back(jinja::Value(std::move(part)));
    }
    dict.Set("content", jinja::Value(std::move(parts)));
  } else {
    dict.Set("content", jinja::Value(absl::StrJoin(*message.text_parts, "\n")));
  }
  return jinja::Value(std::move(dict));
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string origin, SpecialTokens special_tokens,
                           jinja::Template parsed)
    : source_(std::move(source)),
      origin_(std::move(origin)),
      special_tokens_(std::move(special_tokens)),
      template_(std::move(parsed)),
      accepts_content_parts_(IteratesOverContent(template_.body())) {}

absl::StatusOr<ChatTemplate> ChatTemplate::Create(std::string source, std::string origin,
                                                  SpecialTokens special_tokens) {
  absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(source);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat template ", origin, ": ", parsed.status().message()));
  }
  return ChatTemplate(std::move(source), std::move(origin), std::move(special_tokens), *std::move(parsed));
}

jinja::Dict ChatContext(const ChatTemplate& chat_template, absl::Span<const ChatMessage> messages,
                        bool add_generation_prompt, const std::optional<nlohmann::ordered_json>& tools) {
  jinja::Dict context;
  jinja::List list;
  for (const ChatMessage& message : messages) {
    list.push_back(MessageValue(message, chat_template.accepts_content_parts()));
  }
  context.Set("messages", jinja::Value(std::move(list)));
  context.Set("add_generation_prompt", jinja::Value(add_generation_prompt));
  context.Set("tools", tools.has_value() ? jinja::FromJson(*tools) : jinja::Value::MakeNone());
  const SpecialTokens& special = chat_template.special_tokens();
  for (const auto& [name, token] : {std::pair{"bos_token", &special.bos_token}, std::pair{"eos_token", &special.eos_token},
                                    std::pair{"unk_token", &special.unk_token}, std::pair{"pad_token", &special.pad_token}}) {
    if (token->has_value()) context.Set(name, jinja::Value(**token));
  }
  return context;
}

absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat_template, absl::Span<const ChatMessage> messages,
                                       bool add_generation_prompt,
                                       const std::optional<nlohmann::ordered_json>& tools) {
  if (messages.empty()) return absl::InvalidArgumentError("messages: the conversation is empty");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role.empty()) return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role: empty"));
  }
  absl::StatusOr<std::string> text =
      chat_template.jinja_template().Render(ChatContext(chat_template, messages, add_generation_prompt, tools));
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("chat template: ", text.status().message()));
  return text;
}

}  // namespace inferd

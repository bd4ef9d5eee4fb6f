#include "server/chat_template/chat_template_loader.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace inferd {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> ReadFile(const fs::path& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot read ", what));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Where tokenizer_config.json would be: beside the tokenizer, else the model.
std::optional<fs::path> ConfigDirectory(const std::string& model_path, const std::string& tokenizer_path) {
  for (const std::string& path : {tokenizer_path, model_path}) {
    if (path.empty()) continue;
    std::error_code error;
    if (fs::is_directory(path, error)) return fs::path(path);
    if (fs::is_regular_file(path, error)) return fs::path(path).parent_path();
  }
  return std::nullopt;
}

// A special token is a string or an AddedToken object {"content": ...}.
absl::Status ReadSpecialToken(const Json& config, const char* key, const fs::path& file,
                              std::optional<std::string>* out) {
  if (!config.contains(key) || config[key].is_null()) return absl::OkStatus();
  const Json& value = config[key];
  if (value.is_string()) {
    *out = value.get<std::string>();
  } else if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    *out = value["content"].get<std::string>();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(file.string(), ": ", key, " is neither a string nor {\"content\": ...}"));
  }
  return absl::OkStatus();
}

// The "default" template of a list of {"name", "template"}.
absl::StatusOr<std::string> DefaultTemplate(const Json& list, const fs::path& file) {
  std::vector<std::string> names;
  for (const Json& entry : list) {
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() || !entry.contains("template") ||
        !entry["template"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), ": chat_template list entries must be {\"name\": ..., \"template\": ...}"));
    }
    if (entry["name"] == "default") return entry["template"].get<std::string>();
    names.push_back(entry["name"].get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat(file.string(), ": chat_template has no template named \"default\" (it has: ",
                                                 absl::StrJoin(names, ", "), ")"));
}

}  // namespace

absl::StatusOr<std::optional<ChatTemplate>> LoadChatTemplate(const std::string& model_path,
                                                             const std::string& tokenizer_path,
                                                             const std::string& template_file) {
  SpecialTokens special;
  std::optional<std::string> source;
  std::string origin;
  const std::optional<fs::path> dir = ConfigDirectory(model_path, tokenizer_path);
  std::error_code error;
  if (dir.has_value() && fs::is_regular_file(*dir / "tokenizer_config.json", error)) {
    const fs::path file = *dir / "tokenizer_config.json";
    absl::StatusOr<std::string> text = ReadFile(file, "the tokenizer config");
    if (!text.ok()) return text.status();
    Json config = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(file.string(), ": not a JSON object"));
    }
    for (const auto& [key, slot] : {std::pair{"bos_token", &special.bos_token}, std::pair{"eos_token", &special.eos_token},
                                    std::pair{"unk_token", &special.unk_token}, std::pair{"pad_token", &special.pad_token}}) {
      if (absl::Status s = ReadSpecialToken(config, key, file, slot); !s.ok()) return s;
    }
    if (config.contains("chat_template") && !config["chat_template"].is_null()) {
      const Json& value = config["chat_template"];
      if (value.is_string()) {
        source = value.get<std::string>();
      } else if (value.is_array()) {
        absl::StatusOr<std::string> chosen = DefaultTemplate(value, file);
        if (!chosen.ok()) return chosen.status();
        source = *std::move(chosen);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(file.string(), ": chat_template is neither a string nor a list"));
      }
      origin = file.string();
    }
  }
  if (!source.has_value() && dir.has_value() && fs::is_regular_file(*dir / "chat_template.jinja", error)) {
    origin = (*dir / "chat_template.jinja").string();
    absl::StatusOr<std::string> text = ReadFile(origin, "the chat template");
    if (!text.ok()) return text.status();
    source = *std::move(text);
  }
  if (template_file == kChatMlTemplateName) {
    source = std::string(kChatMlTemplate);
    origin = "the builtin chatml template";
  } else if (!template_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile(template_file, "the chat template (--chat-template)");
    if (!text.ok()) return text.status();
    source = *std::move(text);
    origin = template_file;
  }
  if (!source.has_value()) return std::optional<ChatTemplate>();
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Create(*std::move(source), origin, std::move(special));
  if (!parsed.ok()) return parsed.status();
  return std::optional<ChatTemplate>(*std::move(parsed));
}

}  // namespace inferd

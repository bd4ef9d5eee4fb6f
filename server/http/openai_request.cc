#include "server/http/openai_request.h"

#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace inferd {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& param, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(param, ": ", problem));
}

const char* TypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

// Reads the body's fields with type checks; a field that is absent or
// null is unset, as OpenAI's clients send null for "default".
class Fields {
 public:
  explicit Fields(const json& object) : object_(object) {}

  const json* Get(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status Number(const char* key, std::optional<double>* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return Invalid(key, absl::StrCat("must be a number, got ", TypeName(*v)));
    *out = v->get<double>();
    return absl::OkStatus();
  }

  absl::Status Integer(const char* key, std::optional<int64_t>* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      *out = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                           : static_cast<int64_t>(u);
      return absl::OkStatus();
    }
    if (!v->is_number_integer()) return Invalid(key, absl::StrCat("must be an integer, got ", TypeName(*v)));
    *out = v->get<int64_t>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* key, std::optional<bool>* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return Invalid(key, absl::StrCat("must be a boolean, got ", TypeName(*v)));
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* key, std::optional<std::string>* out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return Invalid(key, absl::StrCat("must be a string, got ", TypeName(*v)));
    *out = v->get<std::string>();
    return absl::OkStatus();
  }

 private:
  const json& object_;
};

#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    if (absl::Status s_ = (expr); !s_.ok()) { \
      return s_;                              \
    }                                         \
  } while (0)

absl::StatusOr<json> ParseBody(const std::string& body) {
  json root = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("the body is not valid JSON (UTF-8)");
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat("the body must be a JSON object, got ",
                                                                        TypeName(root)));
  return root;
}

// Clamps a count the API takes as int64 into the proto's uint32 fields;
// below `min` is an error.
absl::StatusOr<uint32_t> Count(const char* key, int64_t value, int64_t min) {
  if (value < min) return Invalid(key, absl::StrCat("must be at least ", min, ", got ", value));
  return static_cast<uint32_t>(std::min<int64_t>(value, std::numeric_limits<uint32_t>::max()));
}

// The fields both endpoints share: sampling, stopping, the vLLM extensions,
// n, stream and stream_options.
absl::Status ParseCommon(const json& root, const OpenAiLimits& limits, v1::GenerateRequest* proto,
                         OpenAiRequest* out) {
  const Fields f(root);
  std::optional<std::string> model;
  RETURN_IF_ERROR(f.String("model", &model));
  out->model = model.value_or("");
  proto->set_model(out->model);

  v1::SamplingParams* sampling = proto->mutable_sampling();
  std::optional<double> number;
  RETURN_IF_ERROR(f.Number("temperature", &number));
  if (number) sampling->set_temperature(static_cast<float>(*number));
  number.reset();
  RETURN_IF_ERROR(f.Number("top_p", &number));
  if (number) sampling->set_top_p(static_cast<float>(*number));
  number.reset();
  RETURN_IF_ERROR(f.Number("min_p", &number));
  if (number) sampling->set_min_p(static_cast<float>(*number));
  number.reset();
  RETURN_IF_ERROR(f.Number("repetition_penalty", &number));
  if (number) sampling->set_repetition_penalty(static_cast<float>(*number));
  number.reset();
  RETURN_IF_ERROR(f.Number("presence_penalty", &number));
  if (number) sampling->set_presence_penalty(static_cast<float>(*number));
  number.reset();
  RETURN_IF_ERROR(f.Number("frequency_penalty", &number));
  if (number) sampling->set_frequency_penalty(static_cast<float>(*number));

  std::optional<int64_t> integer;
  RETURN_IF_ERROR(f.Integer("top_k", &integer));
  if (integer) {
    // vLLM's -1 means off, as our 0 does.
    if (*integer < -1 || *integer > std::numeric_limits<int32_t>::max()) {
      return Invalid("top_k", absl::StrCat("must be -1 or 0 (off) or a positive count, got ", *integer));
    }
    sampling->set_top_k(*integer == -1 ? 0 : static_cast<int32_t>(*integer));
  }
  integer.reset();
  RETURN_IF_ERROR(f.Integer("seed", &integer));
  if (integer) sampling->set_seed(static_cast<uint64_t>(*integer));  // any int64: its bits are the seed

  v1::StoppingCriteria* stopping = proto->mutable_stopping();
  integer.reset();
  RETURN_IF_ERROR(f.Integer("max_tokens", &integer));
  if (out->kind == ApiKind::kChat) {
    std::optional<int64_t> completion_tokens;
    RETURN_IF_ERROR(f.Integer("max_completion_tokens", &completion_tokens));
    if (completion_tokens) {
      absl::StatusOr<uint32_t> c = Count("max_completion_tokens", *completion_tokens, 1);
      if (!c.ok()) return c.status();
      stopping->set_max_tokens(*c);
      integer.reset();  // the newer name wins
    }
  }
  if (integer) {
    absl::StatusOr<uint32_t> c = Count("max_tokens", *integer, 1);
    if (!c.ok()) return c.status();
    stopping->set_max_tokens(*c);
  }
  integer.reset();
  RETURN_IF_ERROR(f.Integer("min_tokens", &integer));
  if (integer) {
    absl::StatusOr<uint32_t> c = Count("min_tokens", *integer, 0);
    if (!c.ok()) return c.status();
    stopping->set_min_tokens(*c);
  }
  if (const json* stop = f.Get("stop")) {
    if (stop->is_string()) {
      stopping->add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        if (!(*stop)[i].is_string()) {
          return Invalid("stop", absl::StrCat("[", i, "] must be a string, got ", TypeName((*stop)[i])));
        }
        stopping->add_stop((*stop)[i].get<std::string>());
      }
    } else {
      return Invalid("stop", absl::StrCat("must be a string or an array of strings, got ", TypeName(*stop)));
    }
  }
  if (const json* ids = f.Get("stop_token_ids")) {
    if (!ids->is_array()) return Invalid("stop_token_ids", absl::StrCat("must be an array, got ", TypeName(*ids)));
    for (size_t i = 0; i < ids->size(); ++i) {
      const json& id = (*ids)[i];
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Invalid("stop_token_ids", absl::StrCat("[", i, "] must be a token id, got ", id.dump()));
      }
      stopping->add_stop_token_ids(id.get<int32_t>());
    }
  }
  std::optional<bool> flag;
  RETURN_IF_ERROR(f.Bool("ignore_eos", &flag));
  if (flag) stopping->set_ignore_eos(*flag);
  integer.reset();
  RETURN_IF_ERROR(f.Integer("priority", &integer));
  if (integer) {
    if (*integer < std::numeric_limits<int32_t>::min() || *integer > std::numeric_limits<int32_t>::max()) {
      return Invalid("priority", absl::StrCat("must fit in 32 bits, got ", *integer));
    }
    proto->set_priority(static_cast<int32_t>(*integer));
  }

  integer.reset();
  RETURN_IF_ERROR(f.Integer("n", &integer));
  if (integer) {
    if (*integer < 1) return Invalid("n", absl::StrCat("must be at least 1, got ", *integer));
    if (*integer > limits.max_n) {
      return Invalid("n", absl::StrCat(*integer, " choices; at most ", limits.max_n, " are allowed"));
    }
    out->n = static_cast<int>(*integer);
  }
  flag.reset();
  RETURN_IF_ERROR(f.Bool("stream", &flag));
  out->stream = flag.value_or(false);
  if (const json* options = f.Get("stream_options")) {
    if (!options->is_object()) {
      return Invalid("stream_options", absl::StrCat("must be an object, got ", TypeName(*options)));
    }
    if (!out->stream) return Invalid("stream_options", "is only allowed when stream is true");
    const Fields o(*options);
    flag.reset();
    if (absl::Status s = o.Bool("include_usage", &flag); !s.ok()) {
      return Invalid("stream_options", std::string(s.message()));
    }
    out->include_usage = flag.value_or(false);
  }
  return absl::OkStatus();
}

// A completions prompt: a string, token ids, or a list of either.
absl::Status ParsePrompts(const json* prompt, const v1::GenerateRequest& common, OpenAiRequest* out) {
  if (prompt == nullptr) return Invalid("prompt", "is required");
  auto add_text = [&](const std::string& text) {
    v1::GenerateRequest& p = out->prompts.emplace_back(common);
    p.set_text(text);
  };
  auto add_ids = [&](const json& ids, const std::string& where) -> absl::Status {
    v1::GenerateRequest& p = out->prompts.emplace_back(common);
    v1::TokenIds* token_ids = p.mutable_token_ids();
    for (size_t i = 0; i < ids.size(); ++i) {
      const json& id = ids[i];
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Invalid("prompt", absl::StrCat(where, "[", i, "] must be a token id, got ", id.dump()));
      }
      token_ids->add_ids(id.get<int32_t>());
    }
    return absl::OkStatus();
  };
  if (prompt->is_string()) {
    add_text(prompt->get<std::string>());
    return absl::OkStatus();
  }
  if (!prompt->is_array()) {
    return Invalid("prompt", absl::StrCat("must be a string, an array of token ids, or an array of those; got ",
                                          TypeName(*prompt)));
  }
  if (prompt->empty()) return Invalid("prompt", "the prompt is empty");
  if ((*prompt)[0].is_number()) return add_ids(*prompt, "");
  for (size_t i = 0; i < prompt->size(); ++i) {
    const json& item = (*prompt)[i];
    if (item.is_string()) {
      add_text(item.get<std::string>());
    } else if (item.is_array()) {
      if (absl::Status s = add_ids(item, absl::StrCat("[", i, "]")); !s.ok()) return s;
    } else {
      return Invalid("prompt", absl::StrCat("[", i, "] must be a string or an array of token ids, got ",
                                            TypeName(item)));
    }
  }
  return absl::OkStatus();
}

// The roles OpenAI's chat API accepts; the template decides what it renders.
bool IsOpenAiRole(absl::string_view role) {
  return role == "system" || role == "developer" || role == "user" || role == "assistant" || role == "tool";
}

absl::StatusOr<v1::ChatMessages> ParseMessages(const json* messages) {
  if (messages == nullptr) return Invalid("messages", "is required");
  if (!messages->is_array()) return Invalid("messages", absl::StrCat("must be an array, got ", TypeName(*messages)));
  if (messages->empty()) return Invalid("messages", "must hold at least one message");
  v1::ChatMessages out;
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = absl::StrCat("[", i, "]");
    if (!m.is_object()) return Invalid("messages", absl::StrCat(where, " must be an object, got ", TypeName(m)));
    v1::ChatMessage& message = *out.add_messages();
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return Invalid("messages", absl::StrCat(where, ".role must be a string"));
    }
    message.set_role(role->get<std::string>());
    if (!IsOpenAiRole(message.role())) {
      return Invalid("messages", absl::StrCat(where, ".role \"", message.role(),
                                              "\" is not one of system, developer, user, assistant, tool"));
    }
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (message.role() != "assistant") return Invalid("messages", absl::StrCat(where, ".content is required"));
    } else if (content->is_string()) {
      message.set_content(content->get<std::string>());
    } else if (content->is_array()) {
      std::vector<std::string> texts;
      for (size_t k = 0; k < content->size(); ++k) {
        const json& part = (*content)[k];
        auto type = part.is_object() ? part.find("type") : part.end();
        auto text = part.is_object() ? part.find("text") : part.end();
        if (type == part.end() || *type != "text" || text == part.end() || !text->is_string()) {
          return Invalid("messages", absl::StrCat(where, ".content[", k,
                                                  "] must be a text part ({\"type\": \"text\", \"text\": ...}); "
                                                  "this server takes text only"));
        }
        texts.push_back(text->get<std::string>());
      }
      message.set_content(absl::StrJoin(texts, "\n"));
    } else {
      return Invalid("messages", absl::StrCat(where, ".content must be a string or an array of text parts, got ",
                                              TypeName(*content)));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(const std::string& body, const OpenAiLimits& limits) {
  absl::StatusOr<json> root = ParseBody(body);
  if (!root.ok()) return root.status();
  OpenAiRequest out;
  out.kind = ApiKind::kCompletion;
  v1::GenerateRequest common;
  RETURN_IF_ERROR(ParseCommon(*root, limits, &common, &out));
  const Fields f(*root);
  std::optional<bool> echo;
  RETURN_IF_ERROR(f.Bool("echo", &echo));
  if (echo.value_or(false)) return Invalid("echo", "echo=true is not supported");
  std::optional<int64_t> logprobs;
  RETURN_IF_ERROR(f.Integer("logprobs", &logprobs));
  if (logprobs) {
    if (*logprobs < 0) return Invalid("logprobs", absl::StrCat("must be >= 0, got ", *logprobs));
    out.top_logprobs = static_cast<int>(std::min<int64_t>(*logprobs, std::numeric_limits<int32_t>::max()));
    // The engine's N is "the sampled token plus the top N"; 0 still needs one.
    common.set_logprobs(std::max(out.top_logprobs, 1));
  }
  RETURN_IF_ERROR(ParsePrompts(f.Get("prompt"), common, &out));
  if (out.num_choices() > limits.max_n) {
    return Invalid("n", absl::StrCat(out.prompts.size(), " prompts x n ", out.n, " = ", out.num_choices(),
                                     " choices; at most ", limits.max_n, " are allowed"));
  }
  return out;
}

absl::StatusOr<OpenAiRequest> ParseChatRequest(const std::string& body, const OpenAiLimits& limits) {
  absl::StatusOr<json> root = ParseBody(body);
  if (!root.ok()) return root.status();
  OpenAiRequest out;
  out.kind = ApiKind::kChat;
  v1::GenerateRequest common;
  RETURN_IF_ERROR(ParseCommon(*root, limits, &common, &out));
  const Fields f(*root);
  std::optional<bool> logprobs;
  RETURN_IF_ERROR(f.Bool("logprobs", &logprobs));
  std::optional<int64_t> top;
  RETURN_IF_ERROR(f.Integer("top_logprobs", &top));
  if (top && !logprobs.value_or(false)) return Invalid("top_logprobs", "needs logprobs: true");
  if (top && *top < 0) return Invalid("top_logprobs", absl::StrCat("must be >= 0, got ", *top));
  if (logprobs.value_or(false)) {
    out.top_logprobs = static_cast<int>(std::min<int64_t>(top.value_or(0), std::numeric_limits<int32_t>::max()));
    common.set_logprobs(std::max(out.top_logprobs, 1));
  }
  std::optional<bool> add_generation_prompt;
  RETURN_IF_ERROR(f.Bool("add_generation_prompt", &add_generation_prompt));
  absl::StatusOr<v1::ChatMessages> messages = ParseMessages(f.Get("messages"));
  if (!messages.ok()) return messages.status();
  // Rendered by the model's chat template when the request is validated,
  // the same path as gRPC's `messages` prompts (request_validation.h).
  *common.mutable_messages() = *std::move(messages);
  if (add_generation_prompt.has_value()) common.set_add_generation_prompt(*add_generation_prompt);
  out.prompts.push_back(std::move(common));
  return out;
}

absl::Status ToOpenAiNames(const absl::Status& status, ApiKind kind) {
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return status;
  const absl::string_view path = message.substr(0, colon);
  std::string param;
  if (path == "text" || path == "prompt" || absl::StartsWith(path, "token_ids")) {
    param = kind == ApiKind::kChat ? "messages" : "prompt";
  } else if (absl::StartsWith(path, "sampling.") || absl::StartsWith(path, "stopping.")) {
    param = std::string(path.substr(9));
    const size_t bracket = param.find('[');
    if (bracket != std::string::npos) param.resize(bracket);
    if (kind == ApiKind::kChat && param == "max_tokens") param = "max_completion_tokens";
  } else if (path == "logprobs") {
    param = kind == ApiKind::kChat ? "top_logprobs" : "logprobs";
  } else {
    return status;
  }
  absl::Status out(status.code(), absl::StrCat(param, message.substr(colon)));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

std::string ParamOf(const absl::Status& status) {
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return "";
  // "messages[0].role" names the parameter "messages".
  const absl::string_view param = message.substr(0, std::min(colon, message.find('[')));
  for (char c : param) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return "";
  }
  return std::string(param);
}

}  // namespace inferd

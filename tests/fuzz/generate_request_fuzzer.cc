// libFuzzer: the request parser and validation, as the server runs them on
// every Generate call: bytes -> GenerateRequest (ParseRequest: the wire
// format, UTF-8 of every string field) -> engine Request (ToEngineRequest:
// tokenizing with the real stories260K tokenizer, its chat template for
// `messages`, every limit). A rejection must be INVALID_ARGUMENT with a
// message that is valid UTF-8 (it goes into a gRPC status); an accepted
// request must hold what the engine relies on.
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/model/llama2c_checkpoint.h"
#include "engine/tokenizer/llama2c_tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "inferd/v1/inference.pb.h"
#include "server/chat_template/chat_template.h"
#include "server/request_parser.h"
#include "server/request_validation.h"

namespace {

using inferd::ChatTemplate;
using inferd::ModelConfig;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "generate_request_fuzzer: %s\n", what.c_str());
  std::abort();
}

template <typename T>
T Must(absl::StatusOr<T> value, const char* what) {
  if (!value.ok()) Fail(std::string(what) + ": " + value.status().ToString());
  return *std::move(value);
}

// What the server has once its model is loaded: the model's shape, its
// tokenizer, its chat template and the limits derived from them
// (inference_service.cc's MaxPromptBytes).
struct Served {
  Served() {
    const std::string dir = std::string(INFERD_SOURCE_DIR) + "/models/stories260K/";
    model = Must(inferd::LoadLlama2cModel(dir + "stories260K.bin"), "model")->config;
    tokenizer = std::make_unique<inferd::Llama2cTokenizer>(
        Must(inferd::Llama2cTokenizer::Load(dir + "tok512.bin", model.vocab_size), "tokenizer"));
    std::ifstream in(dir + "story_chat.jinja");
    std::stringstream source;
    source << in.rdbuf();
    chat_template = std::make_unique<ChatTemplate>(
        Must(ChatTemplate::Create(source.str(), "story_chat.jinja", {.bos_token = "<s>", .eos_token = "</s>"}),
             "chat template"));
    limits.model_name = "stories260K";
    size_t longest = 1;
    for (int id = 0; id < model.vocab_size; ++id) longest = std::max(longest, tokenizer->Piece(id).size());
    limits.max_prompt_bytes = int64_t{model.max_seq_len} * static_cast<int64_t>(longest);
  }

  ModelConfig model;
  std::unique_ptr<inferd::Llama2cTokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chat_template;
  inferd::RequestLimits limits;
};

void CheckRejection(const absl::Status& status, const char* stage) {
  if (status.code() != absl::StatusCode::kInvalidArgument) Fail(std::string(stage) + " answered " + status.ToString());
  if (status.message().empty()) Fail(std::string(stage) + ": an empty message");
  if (!inferd::IsValidUtf8(std::string_view(status.message().data(), status.message().size()))) Fail(std::string(stage) + ": a message that is not UTF-8");
}

void CheckAccepted(const inferd::Request& r, const Served& served) {
  const int vocab = served.model.vocab_size;
  if (r.id.empty()) Fail("accepted without an id");
  if (r.prompt_ids.empty()) Fail("accepted an empty prompt");
  for (int id : r.prompt_ids) {
    if (id < 0 || id >= vocab) Fail("a prompt id outside the vocabulary: " + std::to_string(id));
  }
  for (int id : r.stopping.stop_token_ids) {
    if (id < 0 || id >= vocab) Fail("a stop token outside the vocabulary: " + std::to_string(id));
  }
  const int64_t total = static_cast<int64_t>(r.prompt_ids.size()) + r.stopping.max_tokens;
  if (r.stopping.max_tokens < 1 || total > served.model.max_seq_len) {
    Fail("prompt + max_tokens outside the context: " + std::to_string(total));
  }
  if (r.stopping.min_tokens < 0 || r.stopping.min_tokens > r.stopping.max_tokens) Fail("min_tokens out of range");
  if (static_cast<int>(r.stopping.stop.size()) > served.limits.max_stop_strings) Fail("too many stop strings");
  for (const std::string& stop : r.stopping.stop) {
    if (stop.empty() || static_cast<int>(stop.size()) > served.limits.max_stop_string_bytes) Fail("a bad stop string");
  }
  if (r.logprobs < 0 || r.logprobs > served.limits.max_logprobs) Fail("logprobs out of range");
  const inferd::SamplingParams& s = r.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0) Fail("a bad temperature");
  if (!(s.top_p > 0 && s.top_p <= 1) || !(s.min_p >= 0 && s.min_p <= 1)) Fail("a bad top_p or min_p");
  if (!(s.repetition_penalty > 0) || !std::isfinite(s.repetition_penalty)) Fail("a bad repetition penalty");
  if (s.top_k < 0) Fail("a negative top_k");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Served& served = *new Served();
  grpc::Slice slice(data, size);
  grpc::ByteBuffer wire(&slice, 1);
  inferd::v1::GenerateRequest request;
  if (absl::Status parsed = inferd::ParseRequest(wire, &request); !parsed.ok()) {
    CheckRejection(parsed, "ParseRequest");
    return 0;
  }
  // With the model's chat template and, as for a model without one, none.
  for (const ChatTemplate* chat_template :
       {static_cast<const ChatTemplate*>(served.chat_template.get()), static_cast<const ChatTemplate*>(nullptr)}) {
    absl::StatusOr<inferd::Request> converted =
        inferd::ToEngineRequest(request, served.model, *served.tokenizer, served.limits, chat_template);
    if (converted.ok()) {
      CheckAccepted(*converted, served);
    } else {
      CheckRejection(converted.status(), "ToEngineRequest");
    }
    if (request.prompt_case() != inferd::v1::GenerateRequest::kMessages) break;  // the template plays no part
  }
  return 0;
}

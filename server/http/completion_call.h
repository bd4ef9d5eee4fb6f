// One POST /v1/completions or /v1/chat/completions, from submission to the
// last byte: its choices (prompts x n) as engine requests, their outputs
// merged into one JSON response or streamed as Server-Sent Events in
// OpenAI's chunk format, and its abort when the client goes away.
//
// Threads: Start and Abort run on the connection's strand; engine outputs
// arrive on the engine thread and are posted to that strand, so all state
// here is touched by one thread at a time. The engine's callbacks hold the
// call alive until each of its requests has delivered its last output.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "server/http/openai_request.h"
#include "server/http/response_sink.h"
#include "server/inference_service.h"

namespace inferd {

class CompletionCall : public std::enable_shared_from_this<CompletionCall> {
 public:
  // `scope`: the caller's request-id scope (request_ids.h).
  CompletionCall(OpenAiRequest request, InferenceService* service, Engine* engine, std::string model_name,
                 std::string scope, std::shared_ptr<ResponseSink> sink);

  // Submits the first sample of every prompt; the other n - 1 follow once
  // it has produced its first token, so they find its prompt's KV blocks in
  // the prefix cache instead of computing them again. A refusal ends the
  // call with an error response (and aborts what was submitted).
  void Start();
  // The client went away: ends every live request in the engine (within a
  // step; their KV blocks are freed). Nothing more is written.
  void Abort();
  // Whether the response is complete (or the client gone).
  bool done() const { return done_; }

 private:
  struct Choice {
    std::string engine_id;
    bool submitted = false;
    bool finished = false;
    int prev_token = -1;   // for the text of the next token's logprobs
    int text_offset = 0;   // completions' logprobs.text_offset
    std::string text;      // non-streamed: the whole completion
    std::vector<TokenLogprob> logprobs;
    RequestOutput last;    // the finished output (usage, reason)
  };

  absl::Status Submit(int c);
  void OnOutput(int c, RequestOutput output);  // strand
  void Fail(const absl::Status& status);
  void StreamDelta(int c, const RequestOutput& output);
  void StreamFinish(int c, const RequestOutput& output);
  void FinishStream();
  void RespondWhole();
  nlohmann::json Usage() const;
  nlohmann::json ChunkEnvelope() const;
  nlohmann::json FormatLogprobs(Choice& choice, const std::vector<TokenLogprob>& tokens);

  const OpenAiRequest request_;
  InferenceService* const service_;
  Engine* const engine_;
  const std::string model_name_;
  const std::string scope_;
  const std::shared_ptr<ResponseSink> sink_;
  const std::string id_;  // "cmpl-..." or "chatcmpl-..."
  const int64_t created_;
  std::vector<Choice> choices_;
  int num_finished_ = 0;
  bool stream_started_ = false;  // the 200 header is out
  bool done_ = false;
};

}  // namespace inferd

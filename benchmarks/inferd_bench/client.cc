#include "benchmarks/inferd_bench/client.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace inferd::bench {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status ToAbsl(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// One streaming Generate. Owns itself from Start() until OnDone, the last
// reaction gRPC makes, where it hands its result on and deletes itself.
class GenerateCall final : public grpc::ClientReadReactor<inferd::v1::GenerateResponse> {
 public:
  GenerateCall(inferd::v1::GenerateRequest request, InferenceClient::DoneCallback done)
      : request_(std::move(request)), done_(std::move(done)) {}

  void Start(inferd::v1::Inference::Stub* stub) {
    stub->async()->GenerateStream(&context_, &request_, this);
    StartRead(&response_);
    sent_ = Clock::now();
    last_message_ = sent_;
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    const Clock::time_point now = Clock::now();
    if (response_.token_ids_size() > 0) {
      if (result_.output_tokens == 0) {
        result_.ttft_s = Seconds(now - sent_);
      } else {
        result_.itl_s.push_back(Seconds(now - last_message_));
      }
      result_.output_tokens += response_.token_ids_size();
    }
    // E2E ends at the last message, as in vLLM, not at the trailers.
    last_message_ = now;
    if (response_.has_usage()) result_.prompt_tokens = static_cast<int>(response_.usage().prompt_tokens());
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    if (!status.ok()) {
      result_.code = static_cast<absl::StatusCode>(status.error_code());
      result_.error_message = status.error_message();
      last_message_ = Clock::now();
    }
    result_.e2e_s = Seconds(last_message_ - sent_);
    if (result_.output_tokens == 0) result_.ttft_s = result_.e2e_s;
    done_(std::move(result_));
    delete this;
  }

 private:
  grpc::ClientContext context_;
  inferd::v1::GenerateRequest request_;
  inferd::v1::GenerateResponse response_;
  InferenceClient::DoneCallback done_;
  Clock::time_point sent_;
  Clock::time_point last_message_;
  RequestResult result_;
};

// One unary Generate. Owns itself until its completion callback, which
// hands the result on and deletes it.
class GenerateUnaryCall {
 public:
  GenerateUnaryCall(inferd::v1::GenerateRequest request, InferenceClient::DoneCallback done)
      : request_(std::move(request)), done_(std::move(done)) {}

  void Start(inferd::v1::Inference::Stub* stub) {
    sent_ = Clock::now();
    stub->async()->Generate(&context_, &request_, &response_, [this](grpc::Status status) { OnDone(status); });
  }

 private:
  void OnDone(const grpc::Status& status) {
    RequestResult result;
    result.streamed = false;
    result.e2e_s = Seconds(Clock::now() - sent_);
    result.ttft_s = result.e2e_s;
    if (status.ok()) {
      result.output_tokens = response_.token_ids_size();
      if (response_.has_usage()) result.prompt_tokens = static_cast<int>(response_.usage().prompt_tokens());
    } else {
      result.code = static_cast<absl::StatusCode>(status.error_code());
      result.error_message = status.error_message();
    }
    done_(std::move(result));
    delete this;
  }

  grpc::ClientContext context_;
  inferd::v1::GenerateRequest request_;
  inferd::v1::GenerateResponse response_;
  InferenceClient::DoneCallback done_;
  Clock::time_point sent_;
};

}  // namespace

InferenceClient::InferenceClient(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  stub_ = inferd::v1::Inference::NewStub(channel_);
}

absl::StatusOr<inferd::v1::ModelInfo> InferenceClient::GetModelInfo(absl::Duration timeout, bool wait_for_ready) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  context.set_wait_for_ready(wait_for_ready);
  inferd::v1::ModelInfo info;
  const grpc::Status status = stub_->GetModelInfo(&context, inferd::v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return ToAbsl(status);
  return info;
}

absl::StatusOr<inferd::v1::ModelInfo> InferenceClient::WaitForModelInfo(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<inferd::v1::ModelInfo> info =
        GetModelInfo(std::min(absl::Seconds(2), std::max(deadline - absl::Now(), absl::Milliseconds(1))),
                     /*wait_for_ready=*/true);
    if (info.ok() || absl::Now() >= deadline) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

absl::StatusOr<int> InferenceClient::CountTokens(const std::string& text) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  inferd::v1::TokenizeRequest request;
  request.set_text(text);
  request.set_add_bos(false);
  inferd::v1::TokenizeResponse response;
  const grpc::Status status = stub_->Tokenize(&context, request, &response);
  if (!status.ok()) return absl::Status(ToAbsl(status).code(), absl::StrCat("Tokenize: ", status.error_message()));
  return response.token_ids_size();
}

void InferenceClient::StartGenerate(inferd::v1::GenerateRequest request, DoneCallback done) {
  (new GenerateCall(std::move(request), std::move(done)))->Start(stub_.get());
}

void InferenceClient::StartGenerateUnary(inferd::v1::GenerateRequest request, DoneCallback done) {
  (new GenerateUnaryCall(std::move(request), std::move(done)))->Start(stub_.get());
}

}  // namespace inferd::bench

// Starts the real `inferd serve` binary for integration tests and talks to
// it the way a client would: over loopback gRPC, the health service, server
// reflection and the metrics port. Debian's grpc++ ships no generated health
// or reflection clients, so those calls go through grpc::GenericStub with
// hand-encoded protobuf bytes (see the wire helpers below).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "inferd/v1/inference.grpc.pb.h"

extern char** environ;

namespace inferd::testing {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Polls `condition` every `interval` until it holds or `timeout` passes;
// returns whether it held. Tests wait on conditions this way, never on a
// fixed sleep.
template <typename Condition>
bool PollUntil(Condition condition, milliseconds timeout, milliseconds interval = milliseconds(10)) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

// ---------------------------------------------------------------------------
// Protobuf wire format, by hand: just enough for the health and reflection
// messages (all of their fields are strings, varints or nested messages).

inline void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// A length-delimited field (string, bytes or an encoded message).
inline std::string LengthDelimitedField(int field_number, const std::string& payload) {
  std::string out;
  AppendVarint((static_cast<uint64_t>(field_number) << 3) | 2, &out);
  AppendVarint(payload.size(), &out);
  out += payload;
  return out;
}

// ---------------------------------------------------------------------------
// Generic calls on raw bytes.

inline std::string ToBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& slice : slices) out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return out;
}

inline grpc::ByteBuffer FromBytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// A unary call of `method` ("/package.Service/Method") with `request` as the
// message's bytes, so that tests can send what a generated stub would refuse
// to build (or what no stub exists for).
inline grpc::Status RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                                 const std::string& request, std::string* response,
                                 milliseconds timeout = milliseconds(5000)) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  const grpc::ByteBuffer request_buffer = FromBytes(request);
  grpc::ByteBuffer response_buffer;
  // Shared with the callback, so that the promise outlives its set_value
  // even when this thread wakes and returns first.
  auto done = std::make_shared<std::promise<grpc::Status>>();
  std::future<grpc::Status> result = done->get_future();
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer, &response_buffer,
                 [done](grpc::Status status) { done->set_value(std::move(status)); });
  grpc::Status status = result.get();
  if (status.ok() && response != nullptr) *response = ToBytes(response_buffer);
  return status;
}

// Sends one message on a streaming method, half-closes, and collects every
// response until the server ends the call. Serves both bidi methods
// (reflection) and server-streaming ones (on the wire they look the same).
class RawStreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  struct Result {
    grpc::Status status;
    std::vector<std::string> responses;
  };

  static Result Run(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                    const std::string& request, milliseconds timeout = milliseconds(5000)) {
    grpc::GenericStub stub(channel);
    RawStreamCall call(request);
    call.context_.set_deadline(std::chrono::system_clock::now() + timeout);
    stub.PrepareBidiStreamingCall(&call.context_, method, grpc::StubOptions(), &call);
    call.StartWrite(&call.request_);
    call.StartRead(&call.response_);
    call.StartCall();
    // OnDone is the reactor's last reaction; after it the object is ours.
    call.done_->get_future().wait();
    return std::move(call.result_);
  }

 private:
  explicit RawStreamCall(const std::string& request) : request_(FromBytes(request)) {}

  void OnWriteDone(bool ok) override {
    if (ok) StartWritesDone();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    result_.responses.push_back(ToBytes(response_));
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    result_.status = status;
    // The waiter may destroy this reactor as soon as the value is set; the
    // local reference keeps the promise alive until set_value returns.
    const std::shared_ptr<std::promise<void>> done = done_;
    done->set_value();
  }

  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  Result result_;
  std::shared_ptr<std::promise<void>> done_ = std::make_shared<std::promise<void>>();
};

// ---------------------------------------------------------------------------
// grpc.health.v1: HealthCheckRequest { string service = 1; }
// HealthCheckResponse { ServingStatus status = 1; }

enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

inline absl::StatusOr<ServingStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                                 const std::string& service,
                                                 milliseconds timeout = milliseconds(1000)) {
  std::string response;
  const grpc::Status status = RawUnaryCall(channel, "/grpc.health.v1.Health/Check",
                                           service.empty() ? "" : LengthDelimitedField(1, service), &response, timeout);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(response)) return absl::InternalError("unparsable HealthCheckResponse");
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& field = fields.field(i);
    if (field.number() == 1 && field.type() == google::protobuf::UnknownField::TYPE_VARINT) {
      return static_cast<ServingStatus>(field.varint());
    }
  }
  return ServingStatus::kUnknown;  // proto3: the zero value is not on the wire
}

// ---------------------------------------------------------------------------
// Plain HTTP for the metrics port.

// GET http://127.0.0.1:port/path; the body if the answer is 200, nullopt if
// nothing listens or the answer is anything else.
inline std::optional<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::nullopt;
  timeval timeout{.tv_sec = 2, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return std::nullopt;
  }
  // HTTP/1.0 and Connection: close: the answer is neither chunked nor kept
  // alive, so reading to EOF reads exactly one response.
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return std::nullopt;
  }
  std::string answer;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) answer.append(buffer, n);
  close(fd);
  const size_t line_end = answer.find("\r\n");
  const size_t body = answer.find("\r\n\r\n");
  if (line_end == std::string::npos || body == std::string::npos) return std::nullopt;
  if (answer.substr(0, line_end).find(" 200") == std::string::npos) return std::nullopt;
  return answer.substr(body + 4);
}

// The value of the first sample of `name` in Prometheus text (any labels),
// or nullopt if there is none.
inline std::optional<double> MetricValue(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
    size_t rest = name.size();
    if (rest < line.size() && line[rest] == '{') {
      rest = line.find('}', rest);
      if (rest == std::string::npos) continue;
      ++rest;
    }
    if (rest >= line.size() || line[rest] != ' ') continue;  // a longer name
    try {
      return std::stod(line.substr(rest + 1));
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// The server process.

struct ServerOptions {
  std::vector<std::string> flags;  // after `serve --host 127.0.0.1 --port 0 --metrics-port N --http-port 0`
  int metrics_port = 0;            // 0: any free port (read from the log); -1: no metrics listener
  milliseconds ready_timeout{20000};
  // How the harness's channels connect (default: plaintext); with TLS, the
  // name the server's certificate must carry.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string tls_target_name = "localhost";
  // RLIMIT_NOFILE of the server process (soft, hard); 0: inherited.
  rlim_t file_limit_soft = 0;
  rlim_t file_limit_hard = 0;
};

class ServerProcess {
 public:
  // Spawns `INFERD_BINARY serve`, reads the gRPC port from its log and waits
  // until readiness is SERVING. The error carries the server's log.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(ServerOptions options = {}) {
    static std::atomic<int> counter{0};
    std::unique_ptr<ServerProcess> server(new ServerProcess());
    std::string temp_dir = ::testing::TempDir();
    if (temp_dir.empty() || temp_dir.back() != '/') temp_dir += '/';
    server->log_path_ =
        temp_dir + "inferd_server_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".log";

    // --http-port 0: the HTTP API on a free port, so parallel tests never
    // meet on its default 8000.
    std::vector<std::string> args = {INFERD_BINARY, "serve",          "--host",
                                     "127.0.0.1",   "--port",         "0",
                                     "--metrics-port", std::to_string(options.metrics_port), "--http-port",
                                     "0"};
    args.insert(args.end(), options.flags.begin(), options.flags.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);

    // fork + exec rather than posix_spawn for PR_SET_PDEATHSIG: a test
    // binary that crashes takes its servers with it. Between fork and exec
    // only async-signal-safe calls (the parent has threads).
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError(std::string("fork: ") + strerror(errno));
    if (pid == 0) {
      const int log = open(server->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) _exit(126);
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
      if (options.file_limit_hard > 0) {
        const rlimit limit{.rlim_cur = options.file_limit_soft, .rlim_max = options.file_limit_hard};
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
      }
      execve(argv[0], argv.data(), environ);
      _exit(127);
    }
    server->pid_ = pid;

    // The server logs its ports before it loads the model: "metrics on
    // http://HOST:PORT/metrics" (when on), then "listening on HOST:PORT".
    const bool listening = PollUntil(
        [&] {
          const std::string log = server->ReadLog();
          server->port_ = PortAfter(log, " listening on ");
          return server->port_ > 0 || !server->Alive();
        },
        options.ready_timeout);
    if (!listening || server->port_ <= 0) {
      return absl::UnavailableError("the server did not log its port; log:\n" + server->ReadLog());
    }
    server->metrics_port_ = options.metrics_port > 0    ? options.metrics_port
                            : options.metrics_port == 0 ? PortAfter(server->ReadLog(), " metrics on http://")
                                                        : 0;
    server->credentials_ = options.credentials != nullptr ? options.credentials : grpc::InsecureChannelCredentials();
    server->tls_target_name_ = options.credentials != nullptr ? options.tls_target_name : "";
    server->channel_ = server->NewChannel();
    const bool ready = PollUntil(
        [&] {
          if (!server->Alive()) return true;
          absl::StatusOr<ServingStatus> status = server->Health("inferd.v1.Inference");
          return status.ok() && *status == ServingStatus::kServing;
        },
        options.ready_timeout, milliseconds(20));
    if (!ready || !server->Alive()) {
      return absl::UnavailableError("the server did not become ready; log:\n" + server->ReadLog());
    }
    return server;
  }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // A server the test left running is killed: no process outlives its test.
  ~ServerProcess() {
    if (pid_ > 0 && !exit_status_.has_value()) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
    }
  }

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Each stub on a channel of its own when `own_channel`: separate
  // connections, as separate clients would have.
  std::unique_ptr<v1::Inference::Stub> NewStub(bool own_channel = false) const {
    return v1::Inference::NewStub(own_channel ? NewChannel() : channel_);
  }

  // A channel with a connection of its own, with the server's credentials
  // unless others are given.
  std::shared_ptr<grpc::Channel> NewChannel(std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr) const {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    if (!tls_target_name_.empty()) args.SetSslTargetNameOverride(tls_target_name_);
    return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_),
                                     credentials != nullptr ? credentials : credentials_, args);
  }

  absl::StatusOr<ServingStatus> Health(const std::string& service) const { return CheckHealth(channel_, service); }

  // The metrics page, or nullopt if the server has no metrics listener.
  std::optional<std::string> Metrics() const {
    if (metrics_port_ <= 0) return std::nullopt;
    return HttpGet(metrics_port_, "/metrics");
  }

  bool SendSignal(int signal_number) const { return pid_ > 0 && kill(pid_, signal_number) == 0; }

  bool Alive() {
    if (pid_ <= 0 || exit_status_.has_value()) return false;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return false;
    }
    return true;
  }

  // The exit status once the process has ended (128 + N if signal N killed
  // it); nullopt if it is still running after `timeout`.
  std::optional<int> WaitForExit(milliseconds timeout) {
    PollUntil([&] { return !Alive(); }, timeout, milliseconds(5));
    return exit_status_;
  }

  // Everything the server wrote to stdout and stderr so far.
  std::string ReadLog() const {
    std::ifstream in(log_path_, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

  bool WaitForLog(const std::string& needle, milliseconds timeout) const {
    return PollUntil([&] { return ReadLog().find(needle) != std::string::npos; }, timeout);
  }

 private:
  ServerProcess() = default;

  // The port of the "HOST:PORT" that follows `marker` in `log`; 0 if none.
  static int PortAfter(const std::string& log, const std::string& marker) {
    const size_t at = log.find(marker);
    if (at == std::string::npos) return 0;
    const size_t begin = at + marker.size();
    const size_t end = log.find_first_of(" /\n", begin);
    if (end == std::string::npos) return 0;
    const std::string address = log.substr(begin, end - begin);
    const size_t colon = address.rfind(':');
    return colon == std::string::npos ? 0 : std::atoi(address.c_str() + colon + 1);
  }

  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string log_path_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::string tls_target_name_;
  std::shared_ptr<grpc::Channel> channel_;
  std::optional<int> exit_status_;
};

}  // namespace inferd::testing

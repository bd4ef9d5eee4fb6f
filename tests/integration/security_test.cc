// Issue 12, security: API keys, TLS and mTLS end to end, with the real
// `inferd serve` and the C++ gRPC client. Certificates are made at test time
// by tests/integration/make_test_certs.sh (openssl); nothing is committed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "inferd/v1/inference.grpc.pb.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace inferd {
namespace {

using ::inferd::testing::MetricValue;
using ::inferd::testing::PollUntil;
using ::inferd::testing::RunCommand;
using ::inferd::testing::ServerOptions;
using ::inferd::testing::ServerProcess;
using ::inferd::testing::ServingStatus;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyA[] = "sk-alpha-0123456789abcdef";
constexpr char kKeyB[] = "sk-bravo-fedcba9876543210";

std::string TestDir() {
  static std::atomic<int> counter{0};
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / ("security_" + std::to_string(getpid()) + "_" +
                                                     std::to_string(counter++));
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& text) {
  // Through a rename, as deploy tools replace files: never half written.
  std::ofstream(path + ".tmp", std::ios::binary) << text;
  std::filesystem::rename(path + ".tmp", path);
}

void MakeCerts(const std::string& dir, const std::string& prefix = "") {
  const auto result = RunCommand(std::string(INFERD_SOURCE_DIR "/tests/integration/make_test_certs.sh ") + dir +
                                 " " + prefix + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

grpc::Status Generate(v1::Inference::Stub* stub, const std::string& key = "", const std::string& request_id = "",
                      std::chrono::milliseconds timeout = seconds(30)) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
  v1::GenerateRequest request;
  request.set_text("Once");
  request.set_request_id(request_id);
  request.mutable_stopping()->set_max_tokens(2);
  v1::GenerateResponse response;
  return stub->Generate(&context, request, &response);
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const std::string& dir, const std::string& ca,
                                                         bool client_cert) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadFile(dir + "/" + ca);
  if (client_cert) {
    options.pem_private_key = ReadFile(dir + "/client.key");
    options.pem_cert_chain = ReadFile(dir + "/client.pem");
  }
  return grpc::SslCredentials(options);
}

// --- API keys ---------------------------------------------------------------

class ApiKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    keys_ = dir_ + "/keys.txt";
    WriteFile(keys_, std::string("# inferd API keys\n") + kKeyA + "  alpha\n\n" + kKeyB + "\tbravo  # second\n");
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start({.flags = {"--api-keys-file", keys_, "--reflection"}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::string dir_;
  std::string keys_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ApiKeysTest, MissingOrWrongKeyIsUnauthenticated) {
  auto stub = server_->NewStub();
  grpc::Status status = Generate(stub.get());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("authorization: Bearer KEY"));
  status = Generate(stub.get(), "sk-wrong");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(status.error_message(), "invalid API key");
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Basic ") + kKeyA);
    v1::GetModelInfoRequest request;
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&context, request, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // A client cannot claim a tenant itself.
  {
    grpc::ClientContext context;
    context.AddMetadata("x-inferd-tenant", "alpha");
    v1::TokenizeRequest request;
    request.set_text("Once");
    v1::TokenizeResponse response;
    EXPECT_EQ(stub->Tokenize(&context, request, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_TRUE(Generate(stub.get(), kKeyA).ok());
  EXPECT_TRUE(Generate(stub.get(), kKeyB).ok());
  // Health and reflection stay open (the harness's readiness check had no key).
  EXPECT_EQ(server_->Health("inferd.v1.Inference").value_or(ServingStatus::kUnknown), ServingStatus::kServing);
  const auto reflection = ::inferd::testing::RawStreamCall::Run(
      server_->channel(), "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      ::inferd::testing::LengthDelimitedField(7, ""));
  EXPECT_TRUE(reflection.status.ok()) << reflection.status.error_message();
}

TEST_F(ApiKeysTest, TenantsAreCountedByNameAndKeysNeverShow) {
  auto stub = server_->NewStub();
  ASSERT_TRUE(Generate(stub.get(), kKeyA).ok());
  ASSERT_TRUE(Generate(stub.get(), kKeyA).ok());
  ASSERT_TRUE(Generate(stub.get(), kKeyB).ok());
  EXPECT_EQ(Generate(stub.get(), "sk-wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const std::optional<std::string> metrics = server_->Metrics();
  ASSERT_TRUE(metrics.has_value());
  EXPECT_EQ(MetricValue(*metrics, "inferd_tenant_requests_total{tenant=\"alpha\"}"), 2.0) << *metrics;
  EXPECT_EQ(MetricValue(*metrics, "inferd_tenant_requests_total{tenant=\"bravo\"}"), 1.0) << *metrics;
  EXPECT_THAT(*metrics, HasSubstr("grpc_code=\"Unauthenticated\""));
  std::this_thread::sleep_for(milliseconds(200));
  const std::string log = server_->ReadLog();
  for (const std::string& secret : {std::string(kKeyA), std::string(kKeyB), std::string("sk-wrong")}) {
    EXPECT_THAT(*metrics, Not(HasSubstr(secret)));
    EXPECT_THAT(log, Not(HasSubstr(secret)));
  }
  EXPECT_THAT(log, HasSubstr("caller=tenant:alpha"));
}

TEST_F(ApiKeysTest, KeysFileIsReloadedOnChangeAndOnSighup) {
  auto stub = server_->NewStub();
  ASSERT_TRUE(Generate(stub.get(), kKeyA).ok());
  WriteFile(keys_, std::string(kKeyB) + " bravo\nsk-charlie charlie\n");
  grpc::Status status;
  ASSERT_TRUE(PollUntil([&] { return Generate(stub.get(), "sk-charlie").ok(); }, seconds(5), milliseconds(100)));
  EXPECT_EQ(Generate(stub.get(), kKeyA).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // SIGHUP re-reads at once; a file that holds no key leaves the keys in use.
  WriteFile(keys_, "# nothing\n");
  ASSERT_TRUE(server_->SendSignal(SIGHUP));
  ASSERT_TRUE(server_->WaitForLog("holds no API key", seconds(5))) << server_->ReadLog();
  EXPECT_TRUE(Generate(stub.get(), "sk-charlie").ok());
  EXPECT_TRUE(server_->Alive());
}

// Request ids belong to the tenant: its other connections can abort them,
// other tenants cannot, and both may use the same id at once.
TEST_F(ApiKeysTest, RequestIdsAreScopedToTheTenant) {
  auto first = v1::Inference::NewStub(server_->NewChannel());
  auto second = v1::Inference::NewStub(server_->NewChannel());
  grpc::ClientContext stream_context;
  stream_context.AddMetadata("authorization", std::string("Bearer ") + kKeyA);
  v1::GenerateRequest request;
  request.set_request_id("job-1");
  request.mutable_token_ids()->add_ids(1);
  request.mutable_stopping()->set_max_tokens(500);
  request.mutable_stopping()->set_ignore_eos(true);
  auto reader = first->GenerateStream(&stream_context, request);
  v1::GenerateResponse message;
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_TRUE(Generate(second.get(), kKeyB, "job-1").ok());  // bravo's own job-1
  auto abort = [&](const std::string& key) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + key);
    v1::AbortRequest abort_request;
    abort_request.set_request_id("job-1");
    v1::AbortResponse response;
    EXPECT_TRUE(second->Abort(&context, abort_request, &response).ok());
    return response.found();
  };
  EXPECT_FALSE(abort(kKeyB));
  EXPECT_TRUE(abort(kKeyA));  // another connection, the same tenant
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// --- TLS and mTLS -------------------------------------------------------------

TEST(TlsTest, ServesOverTlsOnlyAndReloadsTheCertificate) {
  const std::string dir = TestDir();
  MakeCerts(dir);
  MakeCerts(dir, "next-");
  absl::StatusOr<std::unique_ptr<ServerProcess>> started = ServerProcess::Start(
      {.flags = {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key"},
       .credentials = TlsCredentials(dir, "ca.pem", /*client_cert=*/false)});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  EXPECT_THAT(server->ReadLog(), HasSubstr("(loading"));
  EXPECT_THAT(server->ReadLog(), HasSubstr("; TLS,"));
  EXPECT_TRUE(Generate(server->NewStub(/*own_channel=*/true).get()).ok());
  // A plaintext client gets nowhere.
  auto plaintext = v1::Inference::NewStub(server->NewChannel(grpc::InsecureChannelCredentials()));
  EXPECT_EQ(Generate(plaintext.get(), "", "", seconds(3)).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client that trusts only the next CA fails until the files change.
  auto next_ca = TlsCredentials(dir, "next-ca.pem", false);
  EXPECT_EQ(Generate(v1::Inference::NewStub(server->NewChannel(next_ca)).get(), "", "", seconds(3)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  WriteFile(dir + "/server.key", ReadFile(dir + "/next-server.key"));
  WriteFile(dir + "/server.pem", ReadFile(dir + "/next-server.pem"));
  EXPECT_TRUE(PollUntil(
      [&] { return Generate(v1::Inference::NewStub(server->NewChannel(next_ca)).get(), "", "", seconds(3)).ok(); },
      seconds(10), milliseconds(200)))
      << server->ReadLog();
}

TEST(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  const std::string dir = TestDir();
  MakeCerts(dir);
  MakeCerts(dir, "other-");
  absl::StatusOr<std::unique_ptr<ServerProcess>> started = ServerProcess::Start(
      {.flags = {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key", "--tls-client-ca",
                 dir + "/ca.pem"},
       .credentials = TlsCredentials(dir, "ca.pem", /*client_cert=*/true)});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  EXPECT_THAT(server->ReadLog(), HasSubstr("; mTLS,"));
  EXPECT_TRUE(Generate(server->NewStub(/*own_channel=*/true).get()).ok());
  auto no_cert = v1::Inference::NewStub(server->NewChannel(TlsCredentials(dir, "ca.pem", false)));
  EXPECT_EQ(Generate(no_cert.get(), "", "", seconds(3)).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A certificate from another CA is refused too.
  grpc::SslCredentialsOptions other;
  other.pem_root_certs = ReadFile(dir + "/ca.pem");
  other.pem_private_key = ReadFile(dir + "/other-client.key");
  other.pem_cert_chain = ReadFile(dir + "/other-client.pem");
  auto wrong_ca = v1::Inference::NewStub(server->NewChannel(grpc::SslCredentials(other)));
  EXPECT_EQ(Generate(wrong_ca.get(), "", "", seconds(3)).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(TlsTest, BadTlsSettingsStopStartWithOneLine) {
  const std::string dir = TestDir();
  struct Case {
    std::string flags;
    std::string expected;
  };
  std::ofstream(dir + "/not.pem") << "hello\n";
  const std::vector<Case> cases = {
      {"--tls-cert " + dir + "/missing.pem --tls-key " + dir + "/missing.key", "missing.pem: cannot read"},
      {"--tls-cert " + dir + "/not.pem --tls-key " + dir + "/not.pem", "not a PEM file"},
      {"--tls-cert " + dir + "/not.pem", "give both or neither"},
      {"--metrics-tls", "metrics_tls: needs tls_cert"},
      {"--api-keys-file " + dir + "/none.txt", "none.txt: cannot stat"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.flags);
    const auto result = RunCommand(std::string(INFERD_BINARY) + " serve --port 0 --metrics-port -1 --http-port -1 " + c.flags +
                                   " 2>&1");
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_THAT(result.output, HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace inferd

// The metrics port's HTTP/1.1 server (Boost.Beast on Asio): answers GET and
// HEAD for a fixed table of paths (/metrics, /healthz, /readyz; see
// Metrics::Serve) and nothing else. It knows neither gRPC nor Prometheus:
// each path is a handler that returns a whole response.
//
// Why not prometheus-cpp's Exposer: civetweb gives each connection a
// thread from a small pool and waits 30 s for a request, so two idle clients
// sending half a request block every scrape. Here every connection is
// asynchronous, a request must arrive whole within `request_timeout`, and at
// most `max_connections` are open at once (the rest are closed at accept).
//
// With TLS files it speaks HTTPS only (mTLS with a client CA); the files are
// re-read when they change (checked at most once a second, at accept) or on
// ReloadTls(), so a renewed certificate needs no restart.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace inferd {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Runs on one of the server's threads; must not block for long.
using HttpHandler = std::function<HttpResponse()>;

// PEM files; an empty `cert` means plain HTTP.
struct MetricsTlsFiles {
  std::string cert{};
  std::string key{};
  std::string client_ca{};  // clients must present a certificate this CA signed
};

// Decides, before the handler runs, whether a request for `path` with this
// Authorization header value ("" when absent) may be answered; false: 401.
using HttpAuthorizer = std::function<bool(const std::string& path, const std::string& authorization)>;

struct MetricsHttpServerOptions {
  // From a connection's accept (or its previous response) to the last byte
  // of the next request's header.
  absl::Duration request_timeout = absl::Seconds(5);
  // Writing one response (a client that stops reading is dropped).
  absl::Duration write_timeout = absl::Seconds(10);
  int max_connections = 64;
  int threads = 2;
  MetricsTlsFiles tls{};
  HttpAuthorizer authorize{};  // unset: every request is answered
};

class MetricsHttpServer {
 public:
  // Listens on host:port ("0.0.0.0", "::", "localhost", ...; port 0 picks a
  // free one) and serves `routes` (path -> handler; a query string is
  // ignored). The error names the address and the reason.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, absl::flat_hash_map<std::string, HttpHandler> routes,
      const MetricsHttpServerOptions& options = {});

  // Closes the listener and every connection, and joins the threads.
  ~MetricsHttpServer();

  int port() const;

  // Re-reads the TLS files now (SIGHUP); on error the certificate in use
  // stays and the error names the file. OK without TLS.
  absl::Status ReloadTls();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

 private:
  class Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace inferd

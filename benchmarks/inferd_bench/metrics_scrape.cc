#include "benchmarks/inferd_bench/metrics_scrape.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace inferd::bench {
namespace {

struct Url {
  std::string host;
  std::string port;
  std::string path;
};

absl::StatusOr<Url> ParseUrl(const std::string& url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("--scrape-metrics: ", url, " is not an http:// URL"));
  }
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  Url out;
  out.path = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  out.port = "80";
  if (absl::ConsumePrefix(&authority, "[")) {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return absl::InvalidArgumentError(absl::StrCat("bad host in ", url));
    out.host = std::string(authority.substr(0, close));
    authority.remove_prefix(close + 1);
    if (absl::ConsumePrefix(&authority, ":")) out.port = std::string(authority);
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) out.port = std::string(authority.substr(colon + 1));
  }
  if (out.host.empty() || out.port.empty()) return absl::InvalidArgumentError(absl::StrCat("bad host in ", url));
  return out;
}

// A connected socket with send and receive timeouts, or an error.
absl::StatusOr<int> Connect(const Url& url, absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (const int rc = getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &addresses); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", url.host, ": ", gai_strerror(rc)));
  }
  const timeval tv = absl::ToTimeval(timeout);
  int error = 0;
  int fd = -1;
  for (addrinfo* a = addresses; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      error = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(addresses);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", url.host, ":", url.port, ": ", strerror(error)));
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::string> HttpGet(const std::string& url_text, absl::Duration timeout) {
  absl::StatusOr<Url> url = ParseUrl(url_text);
  if (!url.ok()) return url.status();
  absl::StatusOr<int> fd = Connect(*url, timeout);
  if (!fd.ok()) return fd.status();
  // HTTP/1.0 with Connection: close: the answer is never chunked and ends
  // at EOF, so reading to EOF reads exactly one response.
  const std::string request =
      absl::StrCat("GET ", url->path, " HTTP/1.0\r\nHost: ", url->host, "\r\nConnection: close\r\n\r\n");
  std::string answer;
  bool sent = send(*fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
  char buffer[16384];
  ssize_t n = 0;
  while (sent && (n = recv(*fd, buffer, sizeof(buffer), 0)) > 0) answer.append(buffer, n);
  close(*fd);
  if (!sent || n < 0) return absl::UnavailableError(absl::StrCat("GET ", url_text, ": connection failed or timed out"));
  const size_t line_end = answer.find("\r\n");
  const size_t body = answer.find("\r\n\r\n");
  if (line_end == std::string::npos || body == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("GET ", url_text, ": not an HTTP response"));
  }
  const std::string status_line = answer.substr(0, line_end);
  if (status_line.find(" 200") == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("GET ", url_text, ": ", status_line));
  }
  return answer.substr(body + 4);
}

absl::StatusOr<double> SumMetric(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  double sum = 0.0;
  bool found = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || !absl::StartsWith(line, name)) continue;
    size_t rest = name.size();
    if (rest < line.size() && line[rest] == '{') {
      // Label values may hold '}' only inside quotes; ours never do, but
      // skip to the last '}' before the value to be safe.
      rest = line.rfind('}');
      if (rest == std::string::npos) continue;
      ++rest;
    }
    if (rest >= line.size() || line[rest] != ' ') continue;  // a longer name
    absl::string_view value(line);
    value.remove_prefix(rest + 1);
    value = value.substr(0, value.find(' '));  // an optional timestamp follows
    double parsed;
    if (!absl::SimpleAtod(value, &parsed)) {
      return absl::InvalidArgumentError(absl::StrCat("metric ", name, ": bad value in \"", line, "\""));
    }
    sum += parsed;
    found = true;
  }
  if (!found) return absl::NotFoundError(absl::StrCat("metric ", name, " is not on the page"));
  return sum;
}

absl::StatusOr<ServerCounters> ParseServerCounters(const std::string& text) {
  ServerCounters c;
  const std::pair<const char*, double*> fields[] = {
      {"inferd_generation_tokens_total", &c.generation_tokens},
      {"inferd_prompt_tokens_total", &c.prompt_tokens},
      {"inferd_preemptions_total", &c.preemptions},
      {"inferd_prefix_cache_hit_tokens_total", &c.prefix_cache_hit_tokens},
      {"inferd_step_batch_sequences_sum", &c.batch_sequences_sum},
      {"inferd_step_batch_sequences_count", &c.batch_sequences_count},
      {"inferd_step_duration_seconds_sum", &c.step_seconds_sum},
  };
  for (const auto& [name, field] : fields) {
    absl::StatusOr<double> value = SumMetric(text, name);
    if (!value.ok()) return value.status();
    *field = *value;
  }
  absl::StatusOr<double> decode_sum = SumMetric(text, "inferd_decode_step_duration_seconds_sum");
  absl::StatusOr<double> decode_count = SumMetric(text, "inferd_decode_step_duration_seconds_count");
  if (decode_sum.ok() && decode_count.ok()) {
    c.decode_step_seconds_sum = *decode_sum;
    c.decode_step_count = *decode_count;
  }
  return c;
}

ServerView Delta(const ServerCounters& before, const ServerCounters& after) {
  ServerView view;
  view.generated_tokens = after.generation_tokens - before.generation_tokens;
  view.prompt_tokens = after.prompt_tokens - before.prompt_tokens;
  view.preemptions = after.preemptions - before.preemptions;
  view.prefix_cache_hit_tokens = after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens;
  view.engine_steps = after.batch_sequences_count - before.batch_sequences_count;
  if (view.engine_steps > 0) {
    view.mean_batch_size = (after.batch_sequences_sum - before.batch_sequences_sum) / view.engine_steps;
    view.mean_step_s = (after.step_seconds_sum - before.step_seconds_sum) / view.engine_steps;
  }
  if (before.decode_step_count.has_value() && after.decode_step_count.has_value()) {
    view.decode_steps = *after.decode_step_count - *before.decode_step_count;
    if (view.decode_steps > 0) {
      view.mean_decode_step_s = (*after.decode_step_seconds_sum - *before.decode_step_seconds_sum) / view.decode_steps;
    }
  }
  return view;
}

}  // namespace inferd::bench

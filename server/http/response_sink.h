// Where a request's answer goes: the HTTP connection it came on. Every
// method runs on that connection's strand (Post gets there from another
// thread, such as the engine's), so neither side needs a lock.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace inferd {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;

  // Runs `fn` on the connection's strand.
  virtual void Post(std::function<void()> fn) = 0;

  // A whole response (JSON); ends the exchange.
  virtual void Respond(int http_status, std::string json_body, HttpHeaders headers = {}) = 0;

  // Server-Sent Events: the 200 header, then one `data: ...` event per
  // SendEvent (the framing is added here), then the end of the body.
  virtual void StartEventStream() = 0;
  virtual void SendEvent(const std::string& data) = 0;
  virtual void EndEventStream() = 0;
};

}  // namespace inferd

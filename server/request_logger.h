// One log line per request (id, tokens, how it ended, timings) at info;
// refused requests at warning; internal errors at error.
#pragma once

#include "server/inference_service.h"

namespace inferd {

class RequestLogger final : public RequestObserver {
 public:
  void OnRefused(const std::string& request_id, const absl::Status& status, Protocol protocol) override;
  void OnOutput(const RequestOutput& output, Protocol protocol) override;
};

}  // namespace inferd

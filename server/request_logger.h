// One log line per request (id, tokens, how it ended, timings) at info;
// refused requests at warning; internal errors at error.
#pragma once

#include "server/inference_service.h"

namespace inferd {

class RequestLogger final : public RequestObserver {
 public:
  void OnRefused(const std::string& request_id, const absl::Status& status) override;
  void OnOutput(const RequestOutput& output) override;
};

}  // namespace inferd

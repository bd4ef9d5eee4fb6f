#include "engine/request.h"

namespace inferd {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopString: return "stop_string";
    case FinishReason::kStopToken: return "stop_token";
    case FinishReason::kNone: break;
  }
  return "";
}

}  // namespace inferd

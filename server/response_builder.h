// Engine outputs -> GenerateResponse messages. A stream merges whatever
// arrived while its previous write was in flight into the next message; a
// unary call merges everything into one.
#pragma once

#include "engine/request.h"
#include "inferd/v1/inference.pb.h"

namespace inferd {

// Appends `out`'s tokens, text and logprobs to `response`; for a finished
// output, also sets finish_reason, matched_stop, usage and timing.
void MergeOutput(const RequestOutput& out, v1::GenerateResponse* response);

}  // namespace inferd

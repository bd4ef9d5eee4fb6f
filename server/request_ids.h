// Request ids are chosen by clients, so each caller gets a namespace of its
// own: the engine sees "scoped" ids that join the caller's scope (the API
// key's tenant when keys are on, else the connection's peer) and the
// client's id, so one caller can neither abort, probe nor take another's
// ids, and ids from different callers never collide in the engine.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace inferd {

// "<scope length>:<scope><client id>": unambiguous whatever the two hold.
std::string ScopedRequestId(absl::string_view scope, absl::string_view client_id);

// The parts of a ScopedRequestId; an id that is not scoped is all client id.
absl::string_view ClientRequestId(absl::string_view scoped_id);
absl::string_view RequestScope(absl::string_view scoped_id);

}  // namespace inferd

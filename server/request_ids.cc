#include "server/request_ids.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

// The scope's length and where the scope starts; false if not scoped.
bool Split(absl::string_view scoped_id, size_t* scope_begin, size_t* scope_size) {
  const size_t colon = scoped_id.find(':');
  if (colon == absl::string_view::npos || colon == 0 || colon > 10) return false;
  uint32_t size = 0;
  if (!absl::SimpleAtoi(scoped_id.substr(0, colon), &size) || size > scoped_id.size() - colon - 1) return false;
  *scope_begin = colon + 1;
  *scope_size = size;
  return true;
}

}  // namespace

std::string ScopedRequestId(absl::string_view scope, absl::string_view client_id) {
  return absl::StrCat(scope.size(), ":", scope, client_id);
}

absl::string_view ClientRequestId(absl::string_view scoped_id) {
  size_t begin, size;
  if (!Split(scoped_id, &begin, &size)) return scoped_id;
  return scoped_id.substr(begin + size);
}

absl::string_view RequestScope(absl::string_view scoped_id) {
  size_t begin, size;
  if (!Split(scoped_id, &begin, &size)) return "";
  return scoped_id.substr(begin, size);
}

}  // namespace inferd

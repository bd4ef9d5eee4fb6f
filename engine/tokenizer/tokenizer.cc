#include "engine/tokenizer/tokenizer.h"

namespace inferd {

std::string Tokenizer::Decode(absl::Span<const int> ids, int prev_token) const {
  std::string out;
  for (int id : ids) {
    out.append(DecodeToken(prev_token, id));
    prev_token = id;
  }
  return out;
}

}  // namespace inferd

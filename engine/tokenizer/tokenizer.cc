#include "engine/tokenizer/tokenizer.h"

#include "engine/tokenizer/clean_up_spaces.h"

namespace inferd {

std::string Tokenizer::Decode(absl::Span<const int> ids, int prev_token) const {
  std::string out;
  for (int id : ids) {
    out.append(DecodeToken(prev_token, id));
    if (!IsSpecial(id)) prev_token = id;
  }
  if (CleansUpSpaces()) out = CleanUpTokenizationSpaces(out);
  return out;
}

}  // namespace inferd

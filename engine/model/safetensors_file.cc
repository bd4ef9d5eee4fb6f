#include "engine/model/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

// Element widths of every dtype the format defines; unknown names are
// refused, known but unsupported ones are refused by whoever uses them.
int DtypeBytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

// A header larger than this is not a model header (real ones are < 1 MB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

}  // namespace

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  absl::StatusOr<std::shared_ptr<const MappedFile>> mapped = MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  SafetensorsFile out;
  out.file_ = *std::move(mapped);
  const MappedFile& file = *out.file_;
  auto bad = [&path](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid safetensors file: ", what));
  };
  if (file.size() < 8) return bad(absl::StrCat("only ", file.size(), " bytes (truncated)"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > file.size() - 8) {
    return bad(absl::StrCat("header of ", header_len, " bytes does not fit in the file's ", file.size(),
                            " bytes (truncated or not safetensors)"));
  }
  const nlohmann::json header =
      nlohmann::json::parse(file.data() + 8, file.data() + 8 + header_len, nullptr, /*allow_exceptions=*/false);
  if (!header.is_object()) return bad("the header is not a JSON object");
  const char* data = file.data() + 8 + header_len;
  const uint64_t data_size = file.size() - 8 - header_len;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    // Captured by name: clang 14 (the fuzz build) cannot capture a structured binding.
    auto bad_tensor = [&path, &tensor = name](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", tensor, ": ", what));
    };
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
        !entry.contains("shape") || !entry["shape"].is_array() || !entry.contains("data_offsets") ||
        !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2) {
      return bad_tensor("header entry needs dtype, shape and data_offsets [begin, end]");
    }
    SafetensorsTensor t;
    t.dtype = entry["dtype"].get<std::string>();
    const int width = DtypeBytes(t.dtype);
    if (width == 0) return bad_tensor(absl::StrCat("unknown dtype ", t.dtype));
    uint64_t count = 1;
    for (const nlohmann::json& d : entry["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40)) {
        return bad_tensor("shape must be non-negative integers");
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / 8 / dim) return bad_tensor("shape too large");
      count *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const nlohmann::json& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      return bad_tensor("data_offsets must be non-negative integers");
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return bad_tensor(absl::StrCat("bytes [", begin, ", ", end, ") lie outside the data section of ", data_size,
                                     " bytes (truncated file?)"));
    }
    if (end - begin != count * static_cast<uint64_t>(width)) {
      return bad_tensor(absl::StrCat("holds ", end - begin, " bytes but its shape and dtype need ",
                                     count * static_cast<uint64_t>(width)));
    }
    t.data = data + begin;
    t.bytes = static_cast<size_t>(end - begin);
    t.file = out.file_.get();
    if (t.bytes > 0) ranges.emplace_back(begin, end);
    out.tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      return bad(absl::StrCat("tensors overlap at byte ", ranges[i].first, " of the data section"));
    }
  }
  return out;
}

}  // namespace inferd

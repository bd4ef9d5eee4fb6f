#include "engine/model/gguf_file.h"

#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF"
constexpr uint64_t kMaxCount = uint64_t{1} << 32;
constexpr int kMaxDims = 4;

enum ValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// Bounds-checked little-endian cursor over the mapping.
class Cursor {
 public:
  Cursor(const char* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  bool Read(T& out) {
    if (size_ - pos_ < sizeof(T)) return false;
    std::memcpy(&out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool ReadString(std::string& out) {
    uint64_t len;
    if (!Read(len) || len > size_ - pos_) return false;
    out.assign(data_ + pos_, len);
    pos_ += len;
    return true;
  }
  size_t pos() const { return pos_; }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

template <typename T>
bool ReadNumber(Cursor& c, nlohmann::json& out) {
  T v;
  if (!c.Read(v)) return false;
  out = v;
  return true;
}

// One value of `type`; `error` says what was wrong when false is returned.
bool ReadValue(Cursor& c, uint32_t type, nlohmann::json& out, std::string& error, bool in_array) {
  switch (type) {
    case kU8: return ReadNumber<uint8_t>(c, out);
    case kI8: return ReadNumber<int8_t>(c, out);
    case kU16: return ReadNumber<uint16_t>(c, out);
    case kI16: return ReadNumber<int16_t>(c, out);
    case kU32: return ReadNumber<uint32_t>(c, out);
    case kI32: return ReadNumber<int32_t>(c, out);
    case kF32: return ReadNumber<float>(c, out);
    case kU64: return ReadNumber<uint64_t>(c, out);
    case kI64: return ReadNumber<int64_t>(c, out);
    case kF64: return ReadNumber<double>(c, out);
    case kBool: {
      uint8_t b;
      if (!c.Read(b)) return false;
      out = b != 0;
      return true;
    }
    case kString: {
      std::string s;
      if (!c.ReadString(s)) return false;
      out = std::move(s);
      return true;
    }
    case kArray: {
      if (in_array) {
        error = "nested arrays are not supported";
        return false;
      }
      uint32_t element_type;
      uint64_t n;
      if (!c.Read(element_type) || !c.Read(n)) return false;
      if (n > kMaxCount) {
        error = absl::StrCat("array of ", n, " elements");
        return false;
      }
      out = nlohmann::json::array();
      out.get_ref<nlohmann::json::array_t&>().reserve(static_cast<size_t>(std::min<uint64_t>(n, 1 << 20)));
      for (uint64_t i = 0; i < n; ++i) {
        nlohmann::json element;
        if (!ReadValue(c, element_type, element, error, true)) return false;
        out.push_back(std::move(element));
      }
      return true;
    }
    default:
      error = absl::StrCat("unknown value type ", type);
      return false;
  }
}

// Bytes of a tensor of `type` with `elements` values (`row` = dims[0]);
// 0 when the type is not one this project reads.
uint64_t TensorBytes(uint32_t type, uint64_t elements, uint64_t row) {
  switch (type) {
    case kGgmlF32: return elements * 4;
    case kGgmlF16:
    case kGgmlBF16: return elements * 2;
    case kGgmlQ8_0: return row % 32 == 0 ? elements / 32 * 34 : 0;
    default: return 0;
  }
}

}  // namespace

std::string GgmlTypeName(uint32_t type) {
  static const char* const kNames[] = {"F32",  "F16",  "Q4_0", "Q4_1", "type 4", "type 5", "Q5_0",  "Q5_1",
                                       "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",   "Q5_K",   "Q6_K",  "Q8_K",
                                       "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
                                       "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"};
  if (type < std::size(kNames)) return kNames[type];
  return absl::StrCat("type ", type);
}

absl::StatusOr<GgufFile> GgufFile::Open(const std::string& path) {
  absl::StatusOr<std::shared_ptr<const MappedFile>> mapped = MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  GgufFile out;
  out.file_ = *std::move(mapped);
  const MappedFile& file = *out.file_;
  auto bad = [&path](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid GGUF file: ", what));
  };
  Cursor c(file.data(), file.size());
  uint32_t magic = 0, version = 0;
  uint64_t n_tensors = 0, n_kv = 0;
  if (!c.Read(magic) || magic != kGgufMagic) return bad("no GGUF magic");
  if (!c.Read(version)) return bad("truncated header");
  if (version != 2 && version != 3) return bad(absl::StrCat("version ", version, " (supported: 2, 3)"));
  if (!c.Read(n_tensors) || !c.Read(n_kv)) return bad("truncated header");
  if (n_tensors > kMaxCount || n_kv > kMaxCount) return bad("absurd tensor or key count");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key, error;
    uint32_t type;
    nlohmann::json value;
    if (!c.ReadString(key) || !c.Read(type)) return bad(absl::StrCat("truncated in metadata entry ", i));
    if (!ReadValue(c, type, value, error, false)) {
      return bad(absl::StrCat("metadata ", key, ": ", error.empty() ? "truncated" : error));
    }
    out.metadata_[key] = std::move(value);
  }
  uint64_t alignment = 32;
  if (auto it = out.metadata_.find("general.alignment"); it != out.metadata_.end()) {
    if (!it->second.is_number_unsigned() || it->second.get<uint64_t>() == 0 ||
        (it->second.get<uint64_t>() & (it->second.get<uint64_t>() - 1)) != 0) {
      return bad("general.alignment must be a power of two");
    }
    alignment = it->second.get<uint64_t>();
  }

  struct Info {
    std::string name;
    GgufTensor tensor;
    uint64_t offset;
  };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Info info;
    uint32_t n_dims;
    if (!c.ReadString(info.name) || !c.Read(n_dims)) return bad(absl::StrCat("truncated in tensor info ", i));
    if (n_dims == 0 || n_dims > kMaxDims) return bad(absl::StrCat("tensor ", info.name, ": ", n_dims, " dimensions"));
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim;
      if (!c.Read(dim)) return bad(absl::StrCat("truncated in tensor info ", info.name));
      if (dim == 0 || dim > (uint64_t{1} << 40) || elements > (uint64_t{1} << 48) / dim) {
        return bad(absl::StrCat("tensor ", info.name, ": absurd dimension ", dim));
      }
      elements *= dim;
      info.tensor.dims.push_back(static_cast<int64_t>(dim));
    }
    if (!c.Read(info.tensor.type) || !c.Read(info.offset)) {
      return bad(absl::StrCat("truncated in tensor info ", info.name));
    }
    info.tensor.bytes = TensorBytes(info.tensor.type, elements, info.tensor.dims[0]);
    infos.push_back(std::move(info));
  }
  const uint64_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
  if (data_start > file.size() && n_tensors > 0) return bad("truncated before the tensor data");
  for (Info& info : infos) {
    if (info.offset % alignment != 0) {
      return bad(absl::StrCat("tensor ", info.name, " is not aligned to ", alignment, " bytes"));
    }
    // Every offset must land inside the file (even forming the pointer past
    // it is undefined); tensors of unknown size are refused when used.
    if (info.offset > file.size() - data_start ||
        (info.tensor.bytes > 0 && info.tensor.bytes > file.size() - data_start - info.offset)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", info.name,
                                                     " lies beyond the end of the file (truncated)"));
    }
    info.tensor.data = file.data() + data_start + info.offset;
    if (!out.tensors_.emplace(info.name, std::move(info.tensor)).second) {
      return bad(absl::StrCat("tensor ", info.name, " appears twice"));
    }
  }
  return out;
}

}  // namespace inferd

#include "engine/model/llama2c_checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

// Both formats are little-endian on disk; like llama2.c we read them with
// memcpy/fread and so assume a little-endian host (x86-64, aarch64).
constexpr uint32_t kAk42Magic = 0x616b3432;
constexpr int64_t kFp32HeaderBytes = 7 * 4;
constexpr int64_t kInt8HeaderBytes = 256;
// magic, version, 7 params, shared byte, group_size.
constexpr int64_t kInt8HeaderUsedBytes = 4 + 4 + 7 * 4 + 1 + 4;

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

// An open model file and its size, checked to be a readable regular file.
struct OpenedFile {
  File file;
  int64_t size = 0;
};

absl::StatusOr<OpenedFile> Open(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    return absl::NotFoundError(absl::StrCat(path, ": model file not found"));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(path, ": cannot stat: ", ec.message()));
  File f(std::fopen(path.c_str(), "rb"));
  if (f == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  return OpenedFile{std::move(f), static_cast<int64_t>(size)};
}

absl::Status ReadExactly(const std::string& path, FILE* f, void* dst, int64_t bytes) {
  if (bytes > 0 && std::fread(dst, 1, static_cast<size_t>(bytes), f) != static_cast<size_t>(bytes)) {
    return absl::DataLossError(absl::StrCat(path, ": read error (", bytes, " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status CheckSize(const std::string& path, int64_t expected, int64_t actual) {
  if (actual < expected) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated: expected ", expected,
                                                   " bytes, file has ", actual));
  }
  if (actual > expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": unexpected trailing bytes: expected ", expected, " bytes, file has ", actual,
        " (", actual - expected, " extra); not a llama2.c checkpoint of this shape?"));
  }
  return absl::OkStatus();
}

int32_t Int32At(const unsigned char* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Fills the shape fields from llama2.c's 7 x int32 parameter block.
void ParseParams(const unsigned char* p, ModelConfig* c) {
  c->dim = Int32At(p);
  c->hidden_dim = Int32At(p + 4);
  c->n_layers = Int32At(p + 8);
  c->n_heads = Int32At(p + 12);
  c->n_kv_heads = Int32At(p + 16);
  c->vocab_size = Int32At(p + 20);
  c->max_seq_len = Int32At(p + 24);
}

// Models are named after their folder (models/stories260K/x.bin ->
// "stories260K"), which is what users pass as --model.
std::string ModelName(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) p = path;
  std::string name = p.parent_path().filename().string();
  return name.empty() ? p.stem().string() : name;
}

// Slot of a tensor inside `w`'s fp32 storage, writable for the loaders.
float* Mutable(ModelWeights& w, const Tensor& view) {
  return w.mutable_f32_storage() + (view.f32() - w.f32_storage());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadLlama2cFp32(const std::string& path) {
  absl::StatusOr<OpenedFile> opened = Open(path);
  if (!opened.ok()) return opened.status();
  FILE* f = opened->file.get();
  if (opened->size < kFp32HeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated: expected at least ",
                                                   kFp32HeaderBytes, " bytes (header), file has ",
                                                   opened->size));
  }
  unsigned char header[kFp32HeaderBytes];
  if (absl::Status s = ReadExactly(path, f, header, sizeof header); !s.ok()) return s;

  ModelConfig config;
  ParseParams(header, &config);
  // A negative vocab_size is llama2.c's flag for a separate classifier.
  config.shared_classifier = config.vocab_size > 0;
  if (config.vocab_size < 0 && config.vocab_size != INT32_MIN) {
    config.vocab_size = -config.vocab_size;
  }
  config.name = ModelName(path);
  if (absl::Status s = config.Validate(path); !s.ok()) return s;

  const int64_t classifier = config.shared_classifier ? 0 : int64_t{config.vocab_size} * config.dim;
  const int64_t body = config.NumParameters() - classifier;  // everything before the RoPE tables
  const int64_t rope = int64_t{config.max_seq_len} * config.head_dim();  // 2 * seq * head_dim/2
  const int64_t expected = kFp32HeaderBytes + 4 * (body + rope + classifier);
  if (absl::Status s = CheckSize(path, expected, opened->size); !s.ok()) return s;

  // Storage is laid out in file order, so the body is one read in place.
  std::unique_ptr<ModelWeights> w = ModelWeights::AllocateF32(config);
  if (absl::Status s = ReadExactly(path, f, w->mutable_f32_storage(), 4 * body); !s.ok()) return s;
  if (classifier > 0) {
    if (fseeko(f, static_cast<off_t>(4 * rope), SEEK_CUR) != 0) {
      return absl::DataLossError(absl::StrCat(path, ": cannot skip the RoPE tables"));
    }
    if (absl::Status s = ReadExactly(path, f, Mutable(*w, w->wcls), 4 * classifier); !s.ok()) {
      return s;
    }
  }
  return w;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadLlama2cInt8(const std::string& path) {
  absl::StatusOr<OpenedFile> opened = Open(path);
  if (!opened.ok()) return opened.status();
  FILE* f = opened->file.get();
  if (opened->size < kInt8HeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated: expected at least ",
                                                   kInt8HeaderBytes, " bytes (header), file has ",
                                                   opened->size));
  }
  unsigned char header[kInt8HeaderBytes];
  if (absl::Status s = ReadExactly(path, f, header, sizeof header); !s.ok()) return s;

  uint32_t magic;
  std::memcpy(&magic, header, sizeof magic);
  if (magic != kAk42Magic) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": bad magic 0x", absl::Hex(magic), " (expected 0x616b3432 \"ak42\")"));
  }
  const int32_t version = Int32At(header + 4);
  if (version != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": unsupported ak42 version ", version, " (only version 2, int8 Q8_0, is supported)"));
  }
  ModelConfig config;
  ParseParams(header + 8, &config);
  const uint8_t shared = header[36];
  const int32_t group_size = Int32At(header + 37);
  if (shared > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shared_classifier flag (", static_cast<int>(shared), ") must be 0 or 1"));
  }
  config.shared_classifier = shared == 1;
  config.name = ModelName(path);
  if (absl::Status s = config.Validate(path); !s.ok()) return s;
  if (group_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": group_size (", group_size, ") must be positive"));
  }

  // The quantized tensors in file order: (numel, count) per kind, where
  // per-layer kinds come as n_layers separate tensors.
  const int64_t d = config.dim, h = config.hidden_dim, l = config.n_layers;
  const int64_t v = config.vocab_size, kv = config.kv_dim();
  struct Kind {
    const char* name;
    int64_t numel;
  };
  const Kind kinds[] = {{"token_embedding", v * d}, {"wq", d * d},  {"wk", kv * d},
                        {"wv", kv * d},             {"wo", d * d},  {"w1", h * d},
                        {"w2", d * h},              {"w3", h * d},  {"wcls", v * d}};
  const int num_kinds = config.shared_classifier ? 8 : 9;
  int64_t expected = kInt8HeaderBytes + 4 * (2 * l * d + d);
  int64_t max_numel = 0;
  for (int k = 0; k < num_kinds; ++k) {
    const Kind& kind = kinds[k];
    if (kind.numel % group_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": group_size (", group_size,
                                                     ") does not divide the size of ", kind.name,
                                                     " (", kind.numel, ")"));
    }
    const int64_t count = (k == 0 || k == 8) ? 1 : l;
    expected += count * (kind.numel + 4 * (kind.numel / group_size));
    max_numel = std::max(max_numel, kind.numel);
  }
  if (absl::Status s = CheckSize(path, expected, opened->size); !s.ok()) return s;

  std::unique_ptr<ModelWeights> w = ModelWeights::AllocateF32(config);
  // The fp32 norms: per-layer rms_att and rms_ffn are contiguous in storage.
  if (absl::Status s = ReadExactly(path, f, Mutable(*w, w->layers[0].rms_att), 4 * l * d); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadExactly(path, f, Mutable(*w, w->layers[0].rms_ffn), 4 * l * d); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadExactly(path, f, Mutable(*w, w->rms_final), 4 * d); !s.ok()) return s;

  // One tensor at a time through small buffers, dequantized into place
  // exactly as runq.c does (float(q) * scale, one fp32 product).
  std::vector<int8_t> q(static_cast<size_t>(max_numel));
  std::vector<float> scales(static_cast<size_t>(max_numel / group_size));
  auto read_tensor = [&](const Tensor& view, int64_t numel) -> absl::Status {
    if (absl::Status s = ReadExactly(path, f, q.data(), numel); !s.ok()) return s;
    if (absl::Status s = ReadExactly(path, f, scales.data(), 4 * (numel / group_size)); !s.ok()) {
      return s;
    }
    float* dst = Mutable(*w, view);
    for (int64_t i = 0; i < numel; ++i) {
      dst[i] = static_cast<float>(q[i]) * scales[i / group_size];
    }
    return absl::OkStatus();
  };
  if (absl::Status s = read_tensor(w->token_embedding, v * d); !s.ok()) return s;
  const Tensor LayerWeights::*per_layer[] = {&LayerWeights::wq, &LayerWeights::wk,
                                             &LayerWeights::wv, &LayerWeights::wo,
                                             &LayerWeights::w1, &LayerWeights::w2,
                                             &LayerWeights::w3};
  for (int k = 0; k < 7; ++k) {
    for (const LayerWeights& layer : w->layers) {
      if (absl::Status s = read_tensor(layer.*per_layer[k], kinds[k + 1].numel); !s.ok()) return s;
    }
  }
  if (!config.shared_classifier) {
    if (absl::Status s = read_tensor(w->wcls, v * d); !s.ok()) return s;
  }
  return w;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadLlama2cModel(const std::string& path) {
  absl::StatusOr<OpenedFile> opened = Open(path);
  if (!opened.ok()) return opened.status();
  uint32_t magic = 0;
  if (opened->size >= 4 && std::fread(&magic, 4, 1, opened->file.get()) != 1) {
    return absl::DataLossError(absl::StrCat(path, ": read error"));
  }
  opened->file.reset();
  return magic == kAk42Magic ? LoadLlama2cInt8(path) : LoadLlama2cFp32(path);
}

}  // namespace inferd

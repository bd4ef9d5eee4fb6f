#include "engine/model/hf_model.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/hf_config.h"
#include "engine/memory_budget.h"
#include "engine/model/safetensors_file.h"
#include "engine/model/tensor_convert.h"

namespace inferd {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<nlohmann::json> ReadJson(const fs::path& path, bool optional) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    if (optional) return nlohmann::json();
    return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
  }
  std::ifstream in(path);
  nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON"));
  return json;
}

// The safetensors files of the directory, in index order.
absl::StatusOr<std::vector<fs::path>> WeightFiles(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir / "model.safetensors", ec)) return std::vector<fs::path>{dir / "model.safetensors"};
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (!fs::is_regular_file(index_path, ec)) {
    return absl::NotFoundError(absl::StrCat(dir.string(), ": has config.json but no weights (expected "
                                                          "model.safetensors or model.safetensors.index.json)"));
  }
  absl::StatusOr<nlohmann::json> index = ReadJson(index_path, false);
  if (!index.ok()) return index.status();
  if (!index->contains("weight_map") || !(*index)["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": no \"weight_map\" object"));
  }
  std::set<std::string> seen;
  std::vector<fs::path> files;
  for (const auto& [tensor, file] : (*index)["weight_map"].items()) {
    if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": weight_map entry for ", tensor, " must be a file name"));
    }
    if (seen.insert(file.get<std::string>()).second) files.push_back(dir / file.get<std::string>());
  }
  if (files.empty()) return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": empty weight_map"));
  return files;
}

// The tensors of every file by name, and the files' mappings.
class TensorSet {
 public:
  absl::Status Add(const SafetensorsFile& file) {
    owners_.push_back(file.mapping());
    for (const auto& [name, tensor] : file.tensors()) {
      if (!tensors_.emplace(name, tensor).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(file.mapping()->path(), ": tensor ", name, " is also in another shard"));
      }
    }
    return absl::OkStatus();
  }
  bool Has(const std::string& name) const { return tensors_.contains(name); }

  // A [rows][cols] tensor (vectors: rows = 1 and a 1-D shape) of a supported
  // dtype, viewed in place.
  absl::StatusOr<Tensor> Get(const std::string& name, int64_t rows, int64_t cols, bool vector) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      return absl::NotFoundError(absl::StrCat(where_, ": tensor ", name, " is missing"));
    }
    const SafetensorsTensor& t = it->second;
    const std::vector<int64_t> want = vector ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    if (t.shape != want) {
      auto dims = [](const std::vector<int64_t>& s) {
        std::string out = "[";
        for (size_t i = 0; i < s.size(); ++i) absl::StrAppend(&out, i ? ", " : "", s[i]);
        return out + "]";
      };
      return absl::InvalidArgumentError(absl::StrCat(t.file->path(), ": tensor ", name, " has shape ",
                                                     dims(t.shape), " but config.json implies ", dims(want)));
    }
    WeightType type;
    if (t.dtype == "F32") {
      type = WeightType::kF32;
    } else if (t.dtype == "F16") {
      type = WeightType::kF16;
    } else if (t.dtype == "BF16") {
      type = WeightType::kBF16;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(t.file->path(), ": tensor ", name, " has dtype ", t.dtype,
                                                     ", which is not supported (F32, F16, BF16)"));
    }
    return Tensor{type, t.data, rows, cols};
  }

  void set_where(std::string where) { where_ = std::move(where); }
  const std::string& where() const { return where_; }
  std::vector<std::shared_ptr<const void>>& owners() { return owners_; }

 private:
  std::string where_;
  std::map<std::string, SafetensorsTensor> tensors_;
  std::vector<std::shared_ptr<const void>> owners_;
};

bool Aligned(const Tensor& t) {
  const size_t width = t.type == WeightType::kF32 ? 4 : 2;
  return reinterpret_cast<uintptr_t>(t.data) % width == 0;
}

class Builder {
 public:
  Builder(TensorSet& set, ModelWeights& w) : set_(set), w_(w) {}

  // A matrix kept as stored (copied only when misaligned for its type);
  // every matrix must share the embedding's dtype.
  absl::Status Matrix(const std::string& name, int64_t rows, int64_t cols, Tensor& out) {
    absl::StatusOr<Tensor> t = set_.Get(name, rows, cols, false);
    if (!t.ok()) return t.status();
    if (t->type != w_.dtype) {
      return absl::InvalidArgumentError(absl::StrCat(set_.where(), ": tensor ", name, " is ", std::string(WeightTypeName(t->type)),
                                                     " but the embeddings are ", std::string(WeightTypeName(w_.dtype)),
                                                     "; mixed dtypes are not supported"));
    }
    if (!Aligned(*t)) {
      auto copy = std::make_shared<std::vector<uint64_t>>((t->bytes() + 7) / 8);
      std::memcpy(copy->data(), t->data, t->bytes());
      t->data = copy->data();
      w_.owners.push_back(std::move(copy));
    }
    out = *t;
    return absl::OkStatus();
  }
  // A norm weight or bias, widened to F32.
  absl::Status Vector(const std::string& name, int64_t n, Tensor& out) {
    absl::StatusOr<Tensor> t = set_.Get(name, 1, n, true);
    if (!t.ok()) return t.status();
    out = ToF32(t->type, t->data, 1, n, w_.owners);
    return absl::OkStatus();
  }
  // Rotate-half rows (or elements, for vectors) into adjacent pairs.
  void Permute(Tensor& t, bool vector) {
    const int hd = w_.config.head_dim();
    if (vector) {
      Tensor as_rows{t.type, t.data, t.cols, 1};
      Tensor p = PermuteRotateHalfToPairs(as_rows, hd, w_.owners);
      t.data = p.data;
    } else {
      t = PermuteRotateHalfToPairs(t, hd, w_.owners);
    }
  }

 private:
  TensorSet& set_;
  ModelWeights& w_;
};

#define RETURN_IF_ERROR_HF(expr)                    \
  do {                                              \
    if (absl::Status s = (expr); !s.ok()) return s; \
  } while (0)

absl::Status BuildLayers(Builder& b, ModelWeights& w) {
  const ModelConfig& c = w.config;
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    RETURN_IF_ERROR_HF(b.Vector(p + "input_layernorm.weight", c.dim, l.rms_att));
    RETURN_IF_ERROR_HF(b.Matrix(p + "self_attn.q_proj.weight", c.q_dim(), c.dim, l.wq));
    RETURN_IF_ERROR_HF(b.Matrix(p + "self_attn.k_proj.weight", c.kv_dim(), c.dim, l.wk));
    RETURN_IF_ERROR_HF(b.Matrix(p + "self_attn.v_proj.weight", c.kv_dim(), c.dim, l.wv));
    RETURN_IF_ERROR_HF(b.Matrix(p + "self_attn.o_proj.weight", c.dim, c.q_dim(), l.wo));
    b.Permute(l.wq, false);
    b.Permute(l.wk, false);
    if (c.attention_bias) {
      RETURN_IF_ERROR_HF(b.Vector(p + "self_attn.q_proj.bias", c.q_dim(), l.bq));
      RETURN_IF_ERROR_HF(b.Vector(p + "self_attn.k_proj.bias", c.kv_dim(), l.bk));
      RETURN_IF_ERROR_HF(b.Vector(p + "self_attn.v_proj.bias", c.kv_dim(), l.bv));
      b.Permute(l.bq, true);
      b.Permute(l.bk, true);
    }
    if (c.qk_norm) {
      RETURN_IF_ERROR_HF(b.Vector(p + "self_attn.q_norm.weight", c.head_dim(), l.q_norm));
      RETURN_IF_ERROR_HF(b.Vector(p + "self_attn.k_norm.weight", c.head_dim(), l.k_norm));
      b.Permute(l.q_norm, true);
      b.Permute(l.k_norm, true);
    }
    RETURN_IF_ERROR_HF(b.Vector(p + "post_attention_layernorm.weight", c.dim, l.rms_ffn));
    RETURN_IF_ERROR_HF(b.Matrix(p + "mlp.gate_proj.weight", c.hidden_dim, c.dim, l.w1));
    RETURN_IF_ERROR_HF(b.Matrix(p + "mlp.down_proj.weight", c.dim, c.hidden_dim, l.w2));
    RETURN_IF_ERROR_HF(b.Matrix(p + "mlp.up_proj.weight", c.hidden_dim, c.dim, l.w3));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsHfModelDirectory(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "config.json", ec);
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadHfModel(const std::string& dir_arg, int max_model_len,
                                                          int64_t kv_pool_bytes) {
  const fs::path dir = fs::path(dir_arg).lexically_normal();
  absl::StatusOr<nlohmann::json> config_json = ReadJson(dir / "config.json", false);
  if (!config_json.ok()) return config_json.status();
  absl::StatusOr<nlohmann::json> generation_json = ReadJson(dir / "generation_config.json", true);
  if (!generation_json.ok()) return generation_json.status();
  absl::StatusOr<ModelConfig> config = HfConfigFromJson(*config_json, *generation_json, max_model_len, dir.string());
  if (!config.ok()) return config.status();
  std::string name = dir.filename().string();
  if (name.empty() || name == ".") name = fs::absolute(dir).lexically_normal().filename().string();
  config->name = name;

  absl::StatusOr<std::vector<fs::path>> files = WeightFiles(dir);
  if (!files.ok()) return files.status();
  int64_t file_bytes = 0;
  for (const fs::path& f : *files) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    if (ec) return absl::NotFoundError(absl::StrCat(f.string(), ": cannot read: ", ec.message()));
    file_bytes += static_cast<int64_t>(size);
  }
  // Mapped pages count once they are touched, which serving does to all.
  if (absl::Status s = CheckModelFitsInMemory(dir.string(), file_bytes, kv_pool_bytes); !s.ok()) return s;

  TensorSet set;
  set.set_where(dir.string());
  for (const fs::path& f : *files) {
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(f.string());
    if (!file.ok()) return file.status();
    RETURN_IF_ERROR_HF(set.Add(*file));
  }

  auto w = std::make_unique<ModelWeights>();
  w->config = *config;
  w->owners = set.owners();
  const ModelConfig& c = w->config;
  absl::StatusOr<Tensor> embedding = set.Get("model.embed_tokens.weight", c.vocab_size, c.dim, false);
  if (!embedding.ok()) return embedding.status();
  w->dtype = embedding->type;
  Builder b(set, *w);
  RETURN_IF_ERROR_HF(b.Matrix("model.embed_tokens.weight", c.vocab_size, c.dim, w->token_embedding));
  RETURN_IF_ERROR_HF(BuildLayers(b, *w));
  RETURN_IF_ERROR_HF(b.Vector("model.norm.weight", c.dim, w->rms_final));
  if (c.shared_classifier) {
    w->wcls = w->token_embedding;
  } else {
    RETURN_IF_ERROR_HF(b.Matrix("lm_head.weight", c.vocab_size, c.dim, w->wcls));
  }
  return w;
}

}  // namespace inferd

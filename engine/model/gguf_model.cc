#include "engine/model/gguf_model.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/memory_budget.h"
#include "engine/model/tensor_convert.h"

namespace inferd {
namespace {

#define RETURN_IF_ERROR_GGUF(expr)                  \
  do {                                              \
    if (absl::Status s = (expr); !s.ok()) return s; \
  } while (0)

class Meta {
 public:
  explicit Meta(const GgufFile& f) : f_(f) {}
  const nlohmann::json* Find(const std::string& key) const {
    auto it = f_.metadata().find(key);
    return it == f_.metadata().end() ? nullptr : &it->second;
  }
  absl::Status Int(const std::string& key, int& out, bool required) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) {
      return required ? absl::InvalidArgumentError(absl::StrCat(f_.path(), ": metadata ", key, " is missing"))
                      : absl::OkStatus();
    }
    if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": metadata ", key, " must be a non-negative integer"));
    }
    out = v->get<int>();
    return absl::OkStatus();
  }
  absl::Status Float(const std::string& key, float& out) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": metadata ", key, " must be a number"));
    out = v->get<float>();
    return absl::OkStatus();
  }

 private:
  const GgufFile& f_;
};

absl::StatusOr<ModelConfig> ConfigFromMetadata(const GgufFile& f, int max_model_len) {
  Meta m(f);
  const nlohmann::json* arch = m.Find("general.architecture");
  if (arch == nullptr || !arch->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": metadata general.architecture is missing"));
  }
  if (*arch != "llama") {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": architecture ", arch->get<std::string>(),
                                                   " is not supported (GGUF: llama)"));
  }
  ModelConfig c;
  c.architecture = "llama";
  const nlohmann::json* name = m.Find("general.name");
  c.name = name != nullptr && name->is_string() && !name->get<std::string>().empty()
               ? name->get<std::string>()
               : std::filesystem::path(f.path()).filename().string();
  RETURN_IF_ERROR_GGUF(m.Int("llama.embedding_length", c.dim, true));
  RETURN_IF_ERROR_GGUF(m.Int("llama.feed_forward_length", c.hidden_dim, true));
  RETURN_IF_ERROR_GGUF(m.Int("llama.block_count", c.n_layers, true));
  RETURN_IF_ERROR_GGUF(m.Int("llama.attention.head_count", c.n_heads, true));
  c.n_kv_heads = c.n_heads;
  RETURN_IF_ERROR_GGUF(m.Int("llama.attention.head_count_kv", c.n_kv_heads, false));
  RETURN_IF_ERROR_GGUF(m.Int("llama.context_length", c.max_seq_len, true));
  RETURN_IF_ERROR_GGUF(m.Float("llama.attention.layer_norm_rms_epsilon", c.rms_norm_eps));
  RETURN_IF_ERROR_GGUF(m.Float("llama.rope.freq_base", c.rope_theta));
  int rope_dims = 0;
  RETURN_IF_ERROR_GGUF(m.Int("llama.rope.dimension_count", rope_dims, false));
  if (rope_dims != 0 && c.n_heads > 0 && rope_dims != c.dim / c.n_heads) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": llama.rope.dimension_count ", rope_dims,
                                                   " differs from the head width (partial RoPE is not supported)"));
  }
  if (const nlohmann::json* type = m.Find("llama.rope.scaling.type"); type != nullptr && *type != "none") {
    if (*type != "linear") {
      // A GGUF string need not be UTF-8; a strict dump() would throw.
      return absl::InvalidArgumentError(absl::StrCat(f.path(), ": llama.rope.scaling.type ",
                                                     type->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                                                     " is not supported (linear)"));
    }
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    RETURN_IF_ERROR_GGUF(m.Float("llama.rope.scaling.factor", c.rope_scaling.factor));
  }
  if (auto it = f.tensors().find("rope_freqs.weight"); it != f.tensors().end()) {
    const GgufTensor& t = it->second;
    const int64_t half = c.n_heads > 0 ? c.dim / c.n_heads / 2 : 0;
    if (t.type != kGgmlF32 || t.dims != std::vector<int64_t>{half}) {
      return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor rope_freqs.weight must be F32 of ", half,
                                                     " elements (one per rotated pair)"));
    }
    c.rope_freq_factors.resize(static_cast<size_t>(half));
    std::memcpy(c.rope_freq_factors.data(), t.data, static_cast<size_t>(half) * sizeof(float));
  }
  const auto embd = f.tensors().find("token_embd.weight");
  if (embd == f.tensors().end() || embd->second.dims.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor token_embd.weight is missing or not 2-D"));
  }
  c.vocab_size = static_cast<int>(embd->second.dims[1]);
  c.shared_classifier = !f.tensors().contains("output.weight");
  c.bos_token_id = -1;
  RETURN_IF_ERROR_GGUF(m.Int("tokenizer.ggml.bos_token_id", c.bos_token_id, false));
  c.eos_token_ids.clear();
  // Every id that ends generation, as llama.cpp's llama_vocab_is_eog reads them.
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int id = -1;
    RETURN_IF_ERROR_GGUF(m.Int(key, id, false));
    if (id >= 0 && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(id);
    }
  }
  if (c.eos_token_ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": metadata tokenizer.ggml.eos_token_id is missing"));
  }
  if (max_model_len > c.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("--max-model-len ", max_model_len, " exceeds ", f.path(),
                                                   "'s llama.context_length of ", c.max_seq_len));
  }
  if (max_model_len > 0) c.max_seq_len = max_model_len;
  RETURN_IF_ERROR_GGUF(c.Validate(f.path()));
  return c;
}

class Builder {
 public:
  Builder(const GgufFile& f, ModelWeights& w) : f_(f), w_(w) {}

  absl::StatusOr<Tensor> Get(const std::string& name, int64_t rows, int64_t cols) const {
    auto it = f_.tensors().find(name);
    if (it == f_.tensors().end()) {
      return absl::NotFoundError(absl::StrCat(f_.path(), ": tensor ", name, " is missing"));
    }
    const GgufTensor& t = it->second;
    WeightType type;
    switch (t.type) {
      case kGgmlF32: type = WeightType::kF32; break;
      case kGgmlF16: type = WeightType::kF16; break;
      case kGgmlBF16: type = WeightType::kBF16; break;
      case kGgmlQ8_0: type = WeightType::kQ8_0; break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor ", name, " has type ",
                                                       GgmlTypeName(t.type),
                                                       ", which is not supported (F32, F16, BF16, Q8_0)"));
    }
    const std::vector<int64_t> want = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{cols, rows};
    if (t.dims != want || t.bytes == 0) {
      std::string have;
      for (int64_t d : t.dims) absl::StrAppend(&have, have.empty() ? "" : ", ", d);
      return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor ", name, " has ggml shape [", have,
                                                     "] but the metadata implies [", cols,
                                                     rows == 1 ? "" : absl::StrCat(", ", rows), "]"));
    }
    return Tensor{type, t.data, rows, cols};
  }
  absl::Status Matrix(const std::string& name, int64_t rows, int64_t cols, Tensor& out) {
    absl::StatusOr<Tensor> t = Get(name, rows, cols);
    if (!t.ok()) return t.status();
    // Quantized GGUFs mix types (llama.cpp keeps matrices whose rows Q8_0
    // blocks cannot tile in F16), so each tensor keeps its own type;
    // ModelWeights::dtype is the embedding's.
    out = *t;
    return absl::OkStatus();
  }
  absl::Status Vector(const std::string& name, int64_t n, Tensor& out) {
    absl::StatusOr<Tensor> t = Get(name, 1, n);
    if (!t.ok()) return t.status();
    out = ToF32(t->type, t->data, 1, n, w_.owners);
    return absl::OkStatus();
  }

 private:
  const GgufFile& f_;
  ModelWeights& w_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadGgufWeights(const GgufFile& f, int max_model_len,
                                                              int64_t kv_pool_bytes) {
  absl::StatusOr<ModelConfig> config = ConfigFromMetadata(f, max_model_len);
  if (!config.ok()) return config.status();
  RETURN_IF_ERROR_GGUF(CheckModelFitsInMemory(f.path(), static_cast<int64_t>(f.mapping()->size()), kv_pool_bytes));
  auto w = std::make_unique<ModelWeights>();
  w->config = *config;
  w->owners.push_back(f.mapping());
  const ModelConfig& c = w->config;
  Builder b(f, *w);
  absl::StatusOr<Tensor> embedding = b.Get("token_embd.weight", c.vocab_size, c.dim);
  if (!embedding.ok()) return embedding.status();
  w->dtype = embedding->type;
  w->token_embedding = *embedding;
  w->layers.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = w->layers[static_cast<size_t>(i)];
    const std::string p = absl::StrCat("blk.", i, ".");
    RETURN_IF_ERROR_GGUF(b.Vector(p + "attn_norm.weight", c.dim, l.rms_att));
    RETURN_IF_ERROR_GGUF(b.Matrix(p + "attn_q.weight", c.q_dim(), c.dim, l.wq));
    RETURN_IF_ERROR_GGUF(b.Matrix(p + "attn_k.weight", c.kv_dim(), c.dim, l.wk));
    RETURN_IF_ERROR_GGUF(b.Matrix(p + "attn_v.weight", c.kv_dim(), c.dim, l.wv));
    RETURN_IF_ERROR_GGUF(b.Matrix(p + "attn_output.weight", c.dim, c.q_dim(), l.wo));
    RETURN_IF_ERROR_GGUF(b.Vector(p + "ffn_norm.weight", c.dim, l.rms_ffn));
    RETURN_IF_ERROR_GGUF(b.Matrix(p + "ffn_gate.weight", c.hidden_dim, c.dim, l.w1));
    RETURN_IF_ERROR_GGUF(b.Matrix(p + "ffn_down.weight", c.dim, c.hidden_dim, l.w2));
    RETURN_IF_ERROR_GGUF(b.Matrix(p + "ffn_up.weight", c.hidden_dim, c.dim, l.w3));
  }
  RETURN_IF_ERROR_GGUF(b.Vector("output_norm.weight", c.dim, w->rms_final));
  if (c.shared_classifier) {
    w->wcls = w->token_embedding;
  } else {
    RETURN_IF_ERROR_GGUF(b.Matrix("output.weight", c.vocab_size, c.dim, w->wcls));
  }
  return w;
}

}  // namespace inferd

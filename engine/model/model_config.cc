#include "engine/model/model_config.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

// Caps well above any real Llama model, but low enough that a corrupt or
// hostile header can never make us allocate terabytes.
constexpr int64_t kMaxDim = 65536;
constexpr int64_t kMaxHiddenDim = 262144;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxVocab = int64_t{1} << 22;
constexpr int64_t kMaxSeqLen = int64_t{1} << 22;
constexpr int64_t kMaxParameters = int64_t{1} << 37;

absl::Status CheckRange(const std::string& where, const char* field, int64_t value,
                        int64_t max) {
  if (value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", field, " (", value, ") must be positive"));
  }
  if (value > max) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", field, " (", value,
                                                   ") exceeds the limit of ", max));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t ModelConfig::NumParameters() const {
  // 64-bit throughout: every factor is capped by Validate, but the products
  // of capped values still overflow int.
  const int64_t d = dim, h = hidden_dim, l = n_layers, v = vocab_size;
  const int64_t kv = n_heads > 0 ? d / n_heads * n_kv_heads : 0;
  int64_t n = v * d;                      // token embedding
  n += l * (2 * d                         // rms_att, rms_ffn
            + 2 * d * d                   // wq, wo
            + 2 * kv * d                  // wk, wv
            + 3 * h * d);                 // w1, w2, w3
  n += d;                                 // rms_final
  if (!shared_classifier) n += v * d;     // wcls
  return n;
}

absl::Status ModelConfig::Validate(const std::string& where) const {
  struct Field {
    const char* name;
    int value;
    int64_t max;
  };
  const Field fields[] = {
      {"dim", dim, kMaxDim},
      {"hidden_dim", hidden_dim, kMaxHiddenDim},
      {"n_layers", n_layers, kMaxLayers},
      {"n_heads", n_heads, kMaxHeads},
      {"n_kv_heads", n_kv_heads, kMaxHeads},
      {"vocab_size", vocab_size, kMaxVocab},
      {"max_seq_len", max_seq_len, kMaxSeqLen},
  };
  for (const Field& f : fields) {
    if (absl::Status s = CheckRange(where, f.name, f.value, f.max); !s.ok()) return s;
  }
  if (dim % n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": n_heads (", n_heads,
                                                   ") does not divide dim (", dim, ")"));
  }
  if (n_heads % n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": n_kv_heads (", n_kv_heads, ") does not divide n_heads (", n_heads, ")"));
  }
  // RoPE rotates (x[2i], x[2i+1]) pairs within a head.
  if (head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": head_dim (", head_dim(), " = dim ", dim, " / n_heads ", n_heads,
        ") must be even for RoPE"));
  }
  if (const int64_t n = NumParameters(); n > kMaxParameters) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", n, " parameters exceed the limit of ", kMaxParameters));
  }
  if (!(rms_norm_eps > 0.0f) || !(rope_theta > 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": rms_norm_eps (", rms_norm_eps,
                                                   ") and rope_theta (", rope_theta,
                                                   ") must be positive"));
  }
  return absl::OkStatus();
}

}  // namespace inferd

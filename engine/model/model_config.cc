#include "engine/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

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

bool ModelConfig::IsEos(int token) const {
  return std::find(eos_token_ids.begin(), eos_token_ids.end(), token) != eos_token_ids.end();
}

int64_t ModelConfig::NumParameters() const {
  // 64-bit throughout: every factor is capped by Validate, but the products
  // of capped values still overflow int.
  const int64_t d = dim, h = hidden_dim, l = n_layers, v = vocab_size;
  const int64_t hd = n_heads > 0 ? head_dim() : 0;
  const int64_t q = hd * n_heads, kv = hd * n_kv_heads;
  int64_t n = v * d;                      // token embedding
  n += l * (2 * d                         // rms_att, rms_ffn
            + 2 * q * d                   // wq, wo
            + 2 * kv * d                  // wk, wv
            + 3 * h * d);                 // w1, w2, w3
  if (attention_bias) n += l * (q + 2 * kv);
  if (qk_norm) n += l * 2 * hd;
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
  if (explicit_head_dim < 0 || explicit_head_dim > kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": head_dim (", explicit_head_dim,
                                                   ") is outside [1, ", kMaxDim, "]"));
  }
  if (explicit_head_dim == 0 && dim % n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": n_heads (", n_heads,
                                                   ") does not divide dim (", dim, ")"));
  }
  if (n_heads % n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": n_kv_heads (", n_kv_heads, ") does not divide n_heads (", n_heads, ")"));
  }
  // RoPE rotates pairs within a head.
  if (head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": head_dim (", head_dim(), ") must be even for RoPE"));
  }
  for (int id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": EOS token id ", id,
                                                     " is outside the vocabulary (", vocab_size, ")"));
    }
  }
  if (bos_token_id >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": BOS token id ", bos_token_id,
                                                   " is outside the vocabulary (", vocab_size, ")"));
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

std::vector<float> RopeInverseFrequencies(const ModelConfig& config) {
  const int half = config.head_dim() / 2;
  std::vector<float> freq(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    // theta^(-2i/d) in fp32, the expression of llama2.c and of transformers
    // (1 / base ** (arange(0, d, 2).float() / d)) alike.
    freq[i] = 1.0f / powf(config.rope_theta, static_cast<float>(2 * i) / static_cast<float>(config.head_dim()));
  }
  const RopeScaling& s = config.rope_scaling;
  switch (s.type) {
    case RopeScaling::Type::kNone:
      break;
    case RopeScaling::Type::kLinear:
      for (float& f : freq) f /= s.factor;
      break;
    case RopeScaling::Type::kLlama3: {
      const double old_len = s.original_max_position_embeddings;
      const double low_freq_wavelen = old_len / s.low_freq_factor;
      const double high_freq_wavelen = old_len / s.high_freq_factor;
      for (float& f : freq) {
        const double wavelen = 2 * std::numbers::pi / f;
        if (wavelen < high_freq_wavelen) continue;  // high frequencies: kept
        if (wavelen > low_freq_wavelen) {            // low frequencies: scaled
          f = static_cast<float>(f / s.factor);
          continue;
        }
        const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = static_cast<float>((1 - smooth) * f / s.factor + smooth * f);
      }
      break;
    }
  }
  if (config.rope_freq_factors.size() == freq.size()) {
    for (size_t i = 0; i < freq.size(); ++i) freq[i] /= config.rope_freq_factors[i];
  }
  return freq;
}

}  // namespace inferd

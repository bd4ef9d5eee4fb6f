#!/usr/bin/python3
"""Reference logits for the CPU backend's architecture switches, computed
independently of inferd with numpy in float64, following transformers' math:

- LlamaRotaryEmbedding with rope_scaling (_compute_default_rope_parameters,
  _compute_linear_scaling_rope_parameters, _compute_llama3_parameters; the
  inverse frequencies in float32 as torch computes them);
- Llama / Qwen2 (q/k/v biases) / Qwen3 (q_norm, k_norm over each head before
  RoPE, explicit head_dim) attention with rotate_half, repeat_kv, causal
  softmax; SwiGLU MLP; RMSNorm.

Weights are in Hugging Face's layout (rotate-half order); the C++ test
generates the same values from the same LCG and permutes q/k rows into the
adjacent-pair order inferd uses, so the test also checks that convention.

Run once (Debian's python3-numpy); the output is committed:
  /usr/bin/python3 tests/engine/make_cpu_reference.py > tests/engine/testdata/cpu_reference.json
"""
import json
import math

import numpy as np

MASK64 = (1 << 64) - 1


class Lcg:
    """64-bit LCG (Knuth's MMIX constants); value = top 24 bits mapped to
    [-scale, scale), exact in float32 when scale is a power of two."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self, scale):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & MASK64
        return ((self.state >> 40) / float(1 << 24) - 0.5) * 2.0 * scale

    def tensor(self, shape, scale, offset=0.0):
        n = int(np.prod(shape))
        vals = [offset + self.next(scale) for _ in range(n)]
        return np.array(vals, dtype=np.float64).astype(np.float32).reshape(shape)


MODELS = [
    {
        "name": "qwen3_shaped",
        "dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 32,
        "vocab_size": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "attention_bias": False,
        "qk_norm": True, "tied": True, "rope_scaling": None, "seed": 11,
    },
    {
        "name": "qwen2_shaped",
        "dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16,
        "vocab_size": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "attention_bias": True,
        "qk_norm": False, "tied": False, "rope_scaling": None, "seed": 22,
    },
    {
        # original_max_position_embeddings is small so that, at head_dim 16,
        # pairs fall in all three bands (kept, smoothed, divided).
        "name": "llama31_shaped",
        "dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 4, "n_kv_heads": 1, "head_dim": 16,
        "vocab_size": 128, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "attention_bias": False,
        "qk_norm": False, "tied": False, "seed": 33,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 32},
    },
]

MATRIX_SCALE = 0.125
NUM_TOKENS = 24


def inv_freq(head_dim, theta, scaling):
    """transformers' modeling_rope_utils, in float32 as torch computes it."""
    f = np.float32(1.0) / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32)
                                                  / np.float32(head_dim)))
    f = f.astype(np.float32)
    if scaling is None:
        return f
    if scaling["rope_type"] == "linear":
        return (f / np.float32(scaling["factor"])).astype(np.float32)
    assert scaling["rope_type"] == "llama3"
    factor = scaling["factor"]
    low = scaling["low_freq_factor"]
    high = scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_len / low
    high_freq_wavelen = old_len / high
    wavelen = (np.float32(2 * math.pi) / f).astype(np.float32)
    llama = np.where(wavelen > low_freq_wavelen, f / np.float32(factor), f).astype(np.float32)
    smooth = ((np.float32(old_len) / wavelen - np.float32(low)) / np.float32(high - low)).astype(np.float32)
    smoothed = ((np.float32(1) - smooth) * llama / np.float32(factor) + smooth * llama).astype(np.float32)
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(medium, smoothed, llama).astype(np.float32)


def make_weights(m):
    """Every tensor in the order the C++ test generates them (HF layout)."""
    rng = Lcg(m["seed"])
    d, h, hd, v = m["dim"], m["hidden_dim"], m["head_dim"], m["vocab_size"]
    q, kv = m["n_heads"] * hd, m["n_kv_heads"] * hd
    w = {"embed": rng.tensor((v, d), 1.0), "layers": []}
    for _ in range(m["n_layers"]):
        layer = {"input_norm": rng.tensor((d,), 0.25, 1.0)}
        layer["wq"] = rng.tensor((q, d), MATRIX_SCALE)
        if m["attention_bias"]:
            layer["bq"] = rng.tensor((q,), 0.5)
        layer["wk"] = rng.tensor((kv, d), MATRIX_SCALE)
        if m["attention_bias"]:
            layer["bk"] = rng.tensor((kv,), 0.5)
        layer["wv"] = rng.tensor((kv, d), MATRIX_SCALE)
        if m["attention_bias"]:
            layer["bv"] = rng.tensor((kv,), 0.5)
        if m["qk_norm"]:
            layer["q_norm"] = rng.tensor((hd,), 0.25, 1.0)
            layer["k_norm"] = rng.tensor((hd,), 0.25, 1.0)
        layer["wo"] = rng.tensor((d, q), MATRIX_SCALE)
        layer["post_norm"] = rng.tensor((d,), 0.25, 1.0)
        layer["gate"] = rng.tensor((h, d), MATRIX_SCALE)
        layer["up"] = rng.tensor((h, d), MATRIX_SCALE)
        layer["down"] = rng.tensor((d, h), MATRIX_SCALE)
        w["layers"].append(layer)
    w["norm"] = rng.tensor((d,), 0.25, 1.0)
    w["lm_head"] = w["embed"] if m["tied"] else rng.tensor((v, d), MATRIX_SCALE)
    w["tokens"] = [int((rng.next(0.5) + 0.5) * v) % v for _ in range(NUM_TOKENS)]
    return w


def rms_norm(x, weight, eps):
    x = x.astype(np.float64)
    return weight.astype(np.float64) * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def forward(m, w):
    tokens = w["tokens"]
    t = len(tokens)
    hd, nh, nkv = m["head_dim"], m["n_heads"], m["n_kv_heads"]
    eps = m["rms_norm_eps"]
    freqs = np.outer(np.arange(t, dtype=np.float64),
                     inv_freq(hd, m["rope_theta"], m["rope_scaling"]).astype(np.float64))
    emb = np.concatenate([freqs, freqs], axis=-1)  # [t, hd]
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    causal = np.triu(np.full((t, t), -np.inf), k=1)
    x = w["embed"][tokens].astype(np.float64)
    for layer in w["layers"]:
        f64 = {k: v.astype(np.float64) for k, v in layer.items()}
        xn = rms_norm(x, layer["input_norm"], eps)
        q = xn @ f64["wq"].T
        k = xn @ f64["wk"].T
        v = xn @ f64["wv"].T
        if m["attention_bias"]:
            q, k, v = q + f64["bq"], k + f64["bk"], v + f64["bv"]
        q = q.reshape(t, nh, hd)
        k = k.reshape(t, nkv, hd)
        v = v.reshape(t, nkv, hd)
        if m["qk_norm"]:
            q = rms_norm(q, layer["q_norm"], eps)
            k = rms_norm(k, layer["k_norm"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = nh // nkv
        k = np.repeat(k, group, axis=1)  # repeat_kv
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + causal
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        att = np.einsum("hts,shd->thd", probs, v).reshape(t, nh * hd)
        x = x + att @ f64["wo"].T
        xn = rms_norm(x, layer["post_norm"], eps)
        gate = xn @ f64["gate"].T
        up = xn @ f64["up"].T
        x = x + ((gate / (1.0 + np.exp(-gate))) * up) @ f64["down"].T
    x = rms_norm(x, w["norm"], eps)
    return x @ w["lm_head"].astype(np.float64).T  # [t, vocab]


FREQ_CASES = [
    {"name": "llama3_8b_3.1", "head_dim": 128, "rope_theta": 500000.0,
     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}},
    {"name": "llama3_2_1b", "head_dim": 64, "rope_theta": 500000.0,
     "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}},
    {"name": "linear_4", "head_dim": 64, "rope_theta": 10000.0,
     "rope_scaling": {"rope_type": "linear", "factor": 4.0}},
    {"name": "none", "head_dim": 64, "rope_theta": 10000.0, "rope_scaling": None},
]


def main():
    out = {"generator": "tests/engine/make_cpu_reference.py", "numpy": np.__version__,
           "matrix_scale": MATRIX_SCALE, "models": [], "rope_frequencies": []}
    for m in MODELS:
        w = make_weights(m)
        logits = forward(m, w)
        out["models"].append({**m, "tokens": w["tokens"], "logits": [[float(v) for v in row] for row in logits]})
    for case in FREQ_CASES:
        f = inv_freq(case["head_dim"], case["rope_theta"], case["rope_scaling"])
        out["rope_frequencies"].append({**case, "inv_freq": [float(v) for v in f]})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""RoPE inverse frequencies as transformers computes them
(modeling_rope_utils.py: _compute_default_rope_parameters,
_compute_linear_scaling_rope_parameters, _compute_llama3_parameters),
re-implemented in numpy float64 from that code, for configs of real
checkpoints. Run once; its output is committed as rope_reference.json and
engine tests compare RopeInverseFrequencies with it.
Usage: rope_reference.py > rope_reference.json"""
import json
import math

import numpy as np


def default(base, dim):
    return 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float64) / dim))


def llama3(base, dim, factor, low_freq_factor, high_freq_factor, old_context_len):
    inv_freq = default(base, dim)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium, smoothed, inv_freq_llama)


cases = [
    {"name": "llama3.1-8b", "rope_theta": 500000.0, "head_dim": 128,
     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}},
    {"name": "llama3.2-1b", "rope_theta": 500000.0, "head_dim": 64,
     "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}},
    {"name": "linear-x4", "rope_theta": 10000.0, "head_dim": 64, "rope_scaling": {"rope_type": "linear", "factor": 4.0}},
    {"name": "qwen3", "rope_theta": 1000000.0, "head_dim": 128, "rope_scaling": None},
]
for c in cases:
    s = c["rope_scaling"]
    if s is None:
        f = default(c["rope_theta"], c["head_dim"])
    elif s["rope_type"] == "linear":
        f = default(c["rope_theta"], c["head_dim"]) / s["factor"]
    else:
        f = llama3(c["rope_theta"], c["head_dim"], s["factor"], s["low_freq_factor"], s["high_freq_factor"],
                   s["original_max_position_embeddings"])
    c["inv_freq"] = [float(x) for x in f]
print(json.dumps({"source": "tests/models/rope_reference.py (transformers' formulas, numpy float64)", "cases": cases},
                 indent=1))

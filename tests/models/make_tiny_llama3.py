#!/usr/bin/python3
"""Writes a tiny Hugging Face Llama model directory that uses the REAL Llama 3
tokenizer (128,256 tokens, its tokenizer.json and tokenizer_config.json with
the Llama 3 chat template), for tests of the serving path at a real
vocabulary: config.json (LlamaForCausalLM, hidden 64, 2 layers, 4 heads,
2 KV heads), generation_config.json, and random F32 weights (fixed seed, so
every run writes the same bytes) in model.safetensors.

Usage: make_tiny_llama3.py OUT_DIR [TOKENIZER_DIR]
TOKENIZER_DIR defaults to ../shared/models/tokenizers/llama3 beside the
checkout. Takes about a second; the weights are ~35 MB.
"""

import json
import os
import shutil
import sys

import numpy as np

HIDDEN = 64
INTERMEDIATE = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
VOCAB = 128256
HEAD_DIM = HIDDEN // HEADS


def tensors(rng):
    """The checkpoint's tensors by name, as transformers names them."""
    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float32)

    out = {"model.embed_tokens.weight": matrix(VOCAB, HIDDEN), "model.norm.weight": np.ones(HIDDEN, np.float32)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        out[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        out[p + "self_attn.q_proj.weight"] = matrix(HEADS * HEAD_DIM, HIDDEN)
        out[p + "self_attn.k_proj.weight"] = matrix(KV_HEADS * HEAD_DIM, HIDDEN)
        out[p + "self_attn.v_proj.weight"] = matrix(KV_HEADS * HEAD_DIM, HIDDEN)
        out[p + "self_attn.o_proj.weight"] = matrix(HIDDEN, HEADS * HEAD_DIM)
        out[p + "mlp.gate_proj.weight"] = matrix(INTERMEDIATE, HIDDEN)
        out[p + "mlp.up_proj.weight"] = matrix(INTERMEDIATE, HIDDEN)
        out[p + "mlp.down_proj.weight"] = matrix(HIDDEN, INTERMEDIATE)
    return out


def write_safetensors(path, named):
    """The safetensors format: an 8-byte little-endian header size, the JSON
    header (dtype, shape, data_offsets per tensor), then the raw data."""
    header = {}
    offset = 0
    for name, array in named.items():
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for array in named.values():
            f.write(np.ascontiguousarray(array, dtype="<f4").tobytes())


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    tokenizer_dir = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        here, "..", "..", "..", "shared", "models", "tokenizers", "llama3")
    os.makedirs(out, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out, name))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "tie_word_embeddings": True, "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    # Llama 3 Instruct ends a turn with <|eot_id|> as well.
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 128000, "eos_token_id": [128001, 128009]}, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors(np.random.default_rng(20260)))


if __name__ == "__main__":
    main()

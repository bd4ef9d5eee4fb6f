#!/usr/bin/python3
"""Re-exports the bundled stories260K (llama2.c fp32 + tok512) in the formats
people download, for the loader golden tests:

  hf/           Hugging Face directory, fp32, one model.safetensors
  hf-sharded/   the same in two shards + model.safetensors.index.json
  hf-bf16/      bf16 safetensors
  stories260K-f32.gguf, stories260K-q8_0.gguf   GGUF v3, llama arch + tokenizer
  stories260K-rope-freqs.gguf   f32 with a rope_freqs.weight tensor (loader test)

The HF export permutes wq/wk rows into rotate-half order, as transformers'
convert_llama_weights_to_hf.py does. tokenizer.json is a SentencePiece-style
BPE with byte fallback whose merges are ranked by the merged piece's score,
as transformers' SentencePiece converter ranks them. Debian python3 +
python3-numpy only.  Usage: export_stories260k.py MODEL_DIR OUT_DIR
"""
import json
import os
import struct
import sys

import numpy as np

SPACE = "\u2581"


def read_checkpoint(path):
    data = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(data, dtype="<f4", offset=28)
    head_dim = dim // heads
    kv_dim = kv_heads * head_dim
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        out = f[pos:pos + n].reshape(shape).copy()
        pos += n
        return out

    w = {"embed": take(vocab, dim), "rms_att": take(layers, dim), "wq": take(layers, dim, dim),
         "wk": take(layers, kv_dim, dim), "wv": take(layers, kv_dim, dim), "wo": take(layers, dim, dim),
         "rms_ffn": take(layers, dim), "w1": take(layers, hidden, dim), "w2": take(layers, dim, hidden),
         "w3": take(layers, hidden, dim), "rms_final": take(dim)}
    pos += seq * head_dim  # legacy RoPE tables
    w["wcls"] = w["embed"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, seq=seq,
               shared=shared)
    return cfg, w


def read_tokenizer(path, vocab):
    data = open(path, "rb").read()
    pos = 4
    pieces, scores = [], []
    for _ in range(vocab):
        score, length = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + length].decode("utf-8"))
        pos += length
        scores.append(score)
    # llama2.c's export wrote the control pieces as "\n<s>\n", "\n</s>\n";
    # SentencePiece (and so HF and GGUF) names them plainly.
    pieces[:3] = ["<unk>", "<s>", "</s>"]
    return pieces, scores


def to_rotate_half(w, n_heads):
    """Adjacent-pair rows -> rotate-half rows, per head (HF's permute)."""
    rows, cols = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def hf_tensors(cfg, w):
    t = {"model.embed_tokens.weight": w["embed"], "model.norm.weight": w["rms_final"]}
    for i in range(cfg["layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = w["rms_att"][i]
        t[p + "self_attn.q_proj.weight"] = to_rotate_half(w["wq"][i], cfg["heads"])
        t[p + "self_attn.k_proj.weight"] = to_rotate_half(w["wk"][i], cfg["kv_heads"])
        t[p + "self_attn.v_proj.weight"] = w["wv"][i]
        t[p + "self_attn.o_proj.weight"] = w["wo"][i]
        t[p + "post_attention_layernorm.weight"] = w["rms_ffn"][i]
        t[p + "mlp.gate_proj.weight"] = w["w1"][i]
        t[p + "mlp.down_proj.weight"] = w["w2"][i]
        t[p + "mlp.up_proj.weight"] = w["w3"][i]
    if not cfg["shared"]:
        t["lm_head.weight"] = w["wcls"]
    return t


def bf16_bytes(a):
    """fp32 -> bf16 with round-to-nearest-even, as torch's .to(bfloat16)."""
    bits = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        raw = bf16_bytes(a) if dtype == "BF16" else np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text)) % 8)  # as safetensors pads: data 8-byte aligned
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for b in blobs:
            out.write(b)


def tokenizer_json(pieces, scores):
    vocab = {p.replace(" ", SPACE): i for i, p in enumerate(pieces)}
    # transformers' SentencePieceExtractor: every split of a piece into two
    # pieces is a merge, ranked by the merged piece's score (highest first,
    # stable), splits of one piece ordered by the ids of their parts.
    merges = []
    for piece, score in zip(vocab, scores):
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    special = [{"id": i, "content": pieces[i], "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for i in range(3)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[m[0], m[1]] for m in merges]},
    }


def write_hf(out, cfg, w, pieces, scores, dtype="F32", shards=1):
    os.makedirs(out, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": cfg["dim"],
        "intermediate_size": cfg["hidden"], "num_hidden_layers": cfg["layers"],
        "num_attention_heads": cfg["heads"], "num_key_value_heads": cfg["kv_heads"],
        "vocab_size": cfg["vocab"], "max_position_embeddings": cfg["seq"], "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": cfg["shared"],
        "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "bfloat16" if dtype == "BF16" else "float32",
    }
    json.dump(config, open(f"{out}/config.json", "w"), indent=2)
    # The model ends a story with BOS (models/README.md): both end generation.
    json.dump({"bos_token_id": 1, "eos_token_id": [2, 1]}, open(f"{out}/generation_config.json", "w"), indent=2)
    json.dump(tokenizer_json(pieces, scores), open(f"{out}/tokenizer.json", "w"), ensure_ascii=False)
    json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
               "unk_token": "<unk>", "clean_up_tokenization_spaces": False, "legacy": True,
               "model_max_length": cfg["seq"], "tokenizer_class": "LlamaTokenizer"},
              open(f"{out}/tokenizer_config.json", "w"), indent=2)
    tensors = hf_tensors(cfg, w)
    if shards == 1:
        write_safetensors(f"{out}/model.safetensors", tensors, dtype)
        return
    names = sorted(tensors)
    half = (len(names) + 1) // 2
    weight_map = {}
    for s, chunk in enumerate([names[:half], names[half:]]):
        fname = f"model-{s + 1:05d}-of-00002.safetensors"
        write_safetensors(f"{out}/{fname}", {n: tensors[n] for n in chunk}, dtype)
        weight_map.update({n: fname for n in chunk})
    total = sum(a.size * 4 for a in tensors.values())
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(f"{out}/model.safetensors.index.json", "w"), indent=2)


# --- GGUF v3 -------------------------------------------------------------
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, v):
    if vtype == T_U32:
        return struct.pack("<I", v)
    if vtype == T_I32:
        return struct.pack("<i", v)
    if vtype == T_F32:
        return struct.pack("<f", v)
    if vtype == T_BOOL:
        return struct.pack("<B", 1 if v else 0)
    if vtype == T_STRING:
        return gguf_string(v)
    etype, items = v
    if etype == T_STRING:
        body = b"".join(gguf_string(x) for x in items)
    elif etype == T_F32:
        body = np.asarray(items, dtype="<f4").tobytes()
    else:
        body = np.asarray(items, dtype="<i4").tobytes()
    return struct.pack("<IQ", etype, len(items)) + body


def quantize_q8_0(a):
    """ggml's quantize_row_q8_0_ref: per 32 values d = amax / 127, q = round(x / d)."""
    blocks = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 32)
    d = np.abs(blocks).max(axis=1) / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0).astype(np.float32)
    v = blocks * inv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)  # roundf: ties away from zero
    out = np.empty(blocks.shape[0], dtype=[("d", "<f2"), ("q", "i1", 32)])
    out["d"] = d.astype(np.float16)
    out["q"] = q
    return out.tobytes()


def write_gguf(path, cfg, w, pieces, scores, quantize, rope_freqs=None):
    kv = [
        ("general.architecture", T_STRING, "llama"),
        ("general.name", T_STRING, "stories260K"),
        ("general.alignment", T_U32, 32),
        ("llama.context_length", T_U32, cfg["seq"]),
        ("llama.embedding_length", T_U32, cfg["dim"]),
        ("llama.feed_forward_length", T_U32, cfg["hidden"]),
        ("llama.block_count", T_U32, cfg["layers"]),
        ("llama.attention.head_count", T_U32, cfg["heads"]),
        ("llama.attention.head_count_kv", T_U32, cfg["kv_heads"]),
        ("llama.attention.layer_norm_rms_epsilon", T_F32, 1e-5),
        ("llama.rope.freq_base", T_F32, 10000.0),
        ("llama.rope.dimension_count", T_U32, cfg["dim"] // cfg["heads"]),
        ("tokenizer.ggml.model", T_STRING, "llama"),
        ("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, [p.replace(" ", SPACE) for p in pieces])),
        ("tokenizer.ggml.scores", T_ARRAY, (T_F32, scores)),
        # llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte.
        ("tokenizer.ggml.token_type", T_ARRAY,
         (T_I32, [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 259))),
        ("tokenizer.ggml.unknown_token_id", T_U32, 0),
        ("tokenizer.ggml.bos_token_id", T_U32, 1),
        ("tokenizer.ggml.eos_token_id", T_U32, 2),
        # The model ends a story with BOS (models/README.md); llama.cpp ends
        # generation on the end-of-turn token too.
        ("tokenizer.ggml.eot_token_id", T_U32, 1),
        ("tokenizer.ggml.add_bos_token", T_BOOL, True),
    ]
    tensors = [("token_embd.weight", w["embed"]), ("output_norm.weight", w["rms_final"])]
    if rope_freqs is not None:
        tensors.append(("rope_freqs.weight", np.asarray(rope_freqs, dtype=np.float32)))
    if not cfg["shared"]:
        tensors.append(("output.weight", w["wcls"]))
    for i in range(cfg["layers"]):
        p = f"blk.{i}."
        tensors += [(p + "attn_norm.weight", w["rms_att"][i]), (p + "attn_q.weight", w["wq"][i]),
                    (p + "attn_k.weight", w["wk"][i]), (p + "attn_v.weight", w["wv"][i]),
                    (p + "attn_output.weight", w["wo"][i]), (p + "ffn_norm.weight", w["rms_ffn"][i]),
                    (p + "ffn_gate.weight", w["w1"][i]), (p + "ffn_down.weight", w["w2"][i]),
                    (p + "ffn_up.weight", w["w3"][i])]
    infos, blobs, offset = b"", [], 0
    for name, a in tensors:
        if a.ndim == 1:
            gtype, raw = GGML_F32, np.ascontiguousarray(a, dtype="<f4").tobytes()
        elif quantize and a.shape[1] % 32 == 0:
            gtype, raw = GGML_Q8_0, quantize_q8_0(a)
        elif quantize:
            # As llama.cpp does for rows Q8_0 blocks cannot tile (ffn_down: 172).
            gtype, raw = GGML_F16, np.ascontiguousarray(a, dtype="<f2").tobytes()
        else:
            gtype, raw = GGML_F32, np.ascontiguousarray(a, dtype="<f4").tobytes()
        dims = list(reversed(a.shape))
        infos += gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        infos += struct.pack("<IQ", gtype, offset)
        blobs.append(raw)
        offset += len(raw) + (-len(raw) % 32)
    head = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kv))
    head += b"".join(gguf_string(k) + struct.pack("<I", t) + gguf_value(t, v) for k, t, v in kv)
    head += infos
    with open(path, "wb") as out:
        out.write(head)
        out.write(b"\0" * (-len(head) % 32))
        for raw in blobs:
            out.write(raw)
            out.write(b"\0" * (-len(raw) % 32))


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    cfg, w = read_checkpoint(f"{model_dir}/stories260K.bin")
    pieces, scores = read_tokenizer(f"{model_dir}/tok512.bin", cfg["vocab"])
    os.makedirs(out, exist_ok=True)
    write_hf(f"{out}/hf", cfg, w, pieces, scores)
    write_hf(f"{out}/hf-sharded", cfg, w, pieces, scores, shards=2)
    write_hf(f"{out}/hf-bf16", cfg, w, pieces, scores, dtype="BF16")
    write_gguf(f"{out}/stories260K-f32.gguf", cfg, w, pieces, scores, quantize=False)
    write_gguf(f"{out}/stories260K-q8_0.gguf", cfg, w, pieces, scores, quantize=True)
    # Per-pair RoPE divisors, as llama.cpp writes them for Llama 3.1.
    write_gguf(f"{out}/stories260K-rope-freqs.gguf", cfg, w, pieces, scores, quantize=False,
               rope_freqs=[1.0, 2.0, 4.0, 8.0])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (corpus/<target>/): small valid inputs of
each format, so libFuzzer starts from inside the parsers rather than at their
first check. Run once; the output is committed. Inputs that once crashed a
target are added to its folder by hand (named crash-*), never regenerated.
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def llama2c_fp32(dim=8, hidden=16, layers=1, heads=2, kv_heads=2, vocab=16, seq=4, shared=True):
    head = dim // heads
    kv = dim * kv_heads // heads
    body = (vocab * dim + layers * (dim + dim * dim + 2 * dim * kv + dim * dim + dim + 3 * dim * hidden) + dim)
    rope = seq * head
    classifier = 0 if shared else vocab * dim
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq)
    floats = [((i * 37) % 101 - 50) / 100.0 for i in range(body + rope + classifier)]
    return header + struct.pack(f"<{len(floats)}f", *floats)


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, (vtype, value) in kvs.items():
        out += gguf_string(key) + struct.pack("<I", vtype)
        if vtype == 8:
            out += gguf_string(value)
        elif vtype == 4:
            out += struct.pack("<I", value)
        elif vtype == 6:
            out += struct.pack("<f", value)
        elif vtype == 7:
            out += struct.pack("<?", value)
        elif vtype == 9:  # array: element type, count, elements (strings or uint32 here)
            etype, items = value
            out += struct.pack("<IQ", etype, len(items))
            for item in items:
                out += gguf_string(item) if etype == 8 else struct.pack("<I", item)
    data, offset = b"", 0
    for name, (dims, payload) in tensors.items():
        out += gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", 0, offset)  # type 0: F32
        data += payload + b"\0" * (-len(payload) % alignment)
        offset = len(data)
    out += b"\0" * (-len(out) % alignment)
    return out + data


def main():
    write("llama2c_fuzzer", "tiny_shared.bin", llama2c_fp32())
    write("llama2c_fuzzer", "tiny_classifier_gqa.bin", llama2c_fp32(kv_heads=1, shared=False))
    write("llama2c_fuzzer", "header_only.bin", struct.pack("<7i", 8, 16, 1, 2, 2, 16, 4))

    f32 = struct.pack("<4f", 1, 2, 3, 4)
    write("safetensors_fuzzer", "two_tensors.safetensors",
          safetensors({"a": ("F32", [2, 2], f32), "b.weight": ("BF16", [4], b"\x80\x3f" * 4)}, {"format": "pt"}))
    write("safetensors_fuzzer", "empty.safetensors", safetensors({}))
    write("safetensors_fuzzer", "scalar_i64.safetensors", safetensors({"x": ("I64", [], struct.pack("<q", 7))}))

    write("gguf_fuzzer", "llama_tiny.gguf", gguf(
        {"general.architecture": (8, "llama"), "llama.block_count": (4, 1), "llama.rope.freq_base": (6, 10000.0),
         "tokenizer.ggml.tokens": (9, (8, ["<unk>", "<s>", "</s>", "a"])),
         "tokenizer.ggml.token_type": (9, (4, [2, 3, 3, 1]))},
        {"token_embd.weight": ([2, 4], struct.pack("<8f", *range(8)))}))
    write("gguf_fuzzer", "metadata_only.gguf", gguf({"general.name": (8, "x"), "general.alignment": (4, 64),
                                                    "b": (7, True)}, {}))

    write("hf_tokenizer_fuzzer", "bpe_byte_level.json", json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 0, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {"<s>": 0, "H": 1, "e": 2, "l": 3, "o": 4, "He": 5, "ll": 6, "llo": 7, "Hello": 8,
                            "\u0120": 9, "\u0120w": 10},
                  "merges": ["H e", "l l", "ll o", "He llo", "\u0120 w"]}}, indent=1))
    write("hf_tokenizer_fuzzer", "bpe_metaspace_fallback.json", json.dumps({
        "version": "1.0", "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "},
                                                            "content": "\u2581"}]},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"},
                                                      "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
                                                     {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": {"<unk>": 0, "<0x41>": 1, "\u2581": 2, "a": 3, "\u2581a": 4},
                  "merges": ["\u2581 a"]}}, indent=1))

    with open(os.path.join(SOURCE, "deploy", "configs", "inferd.yaml")) as f:
        write("server_config_fuzzer", "deploy_inferd.yaml", f.read())
    write("server_config_fuzzer", "small.yaml",
          "host: 0.0.0.0\nport: 50051\nmodel: dummy:llama-110m\nmax_num_seqs: 8\nstop: [a, b]\n"
          "tls_cert: c.pem\ntls_key: k.pem\nmetrics_tls: true\ngpu_memory_utilization: 0.5\n")
    write("server_config_fuzzer", "flow.yaml", "{port: 1, log_level: debug, drain_timeout_seconds: 1.5}\n")


if __name__ == "__main__":
    main()

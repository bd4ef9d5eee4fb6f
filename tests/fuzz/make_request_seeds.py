#!/usr/bin/python3
"""Writes the seed corpus of generate_request_fuzzer (corpus/generate_request_fuzzer/):
serialized GenerateRequests, valid ones of every prompt kind and invalid
ones of every kind the server refuses, so libFuzzer starts inside the
validation. Needs the Python stubs the build generates from proto/:

  tests/fuzz/make_request_seeds.py build/python

Run once; the output is committed (crash inputs are added by hand, named
crash-*).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "build", "python"))

from inferd.v1 import inference_pb2 as pb  # noqa: E402


def write(name, data):
    folder = os.path.join(HERE, "corpus", "generate_request_fuzzer")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.SerializeToString())


def main():
    stopping = pb.StoppingCriteria(max_tokens=16, min_tokens=2, stop=[".", "Lily"], stop_token_ids=[2])
    sampling = pb.SamplingParams(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.1,
                                 presence_penalty=0.5, frequency_penalty=-0.5, seed=7)
    write("text_full", pb.GenerateRequest(request_id="seed-1", model="stories260K", text="Once upon a time",
                                          add_bos=True, sampling=sampling, stopping=stopping, priority=-3,
                                          logprobs=3))
    write("text_minimal", pb.GenerateRequest(text="Lily"))
    write("text_special", pb.GenerateRequest(text="<s>Hello</s> ✓ \u00e9", add_bos=False))
    write("token_ids", pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 403, 407, 261]),
                                          stopping=pb.StoppingCriteria(max_tokens=500)))
    write("messages", pb.GenerateRequest(messages=pb.ChatMessages(messages=[
        pb.ChatMessage(role="system", content="Tell a story."),
        pb.ChatMessage(role="user", content="About a dog"),
        pb.ChatMessage(role="assistant", content="Once"),
        pb.ChatMessage(role="user", content="More")]), add_generation_prompt=True))
    # Refused ones.
    write("bad_temperature", pb.GenerateRequest(text="Hi", sampling=pb.SamplingParams(temperature=float("nan"))))
    write("bad_top_p", pb.GenerateRequest(text="Hi", sampling=pb.SamplingParams(top_p=0.0)))
    write("bad_max_tokens", pb.GenerateRequest(text="Hi", stopping=pb.StoppingCriteria(max_tokens=0)))
    write("too_long", pb.GenerateRequest(text="Hi", stopping=pb.StoppingCriteria(max_tokens=4294967295)))
    write("bad_vocab", pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 512, -1])))
    write("bad_model", pb.GenerateRequest(text="Hi", model="other"))
    write("many_stops", pb.GenerateRequest(text="Hi", stopping=pb.StoppingCriteria(stop=[str(i) for i in range(20)])))
    write("empty", b"")
    write("not_utf8", b"\x1a\x04Hi\xff\xfe")  # text = 3, not UTF-8
    write("truncated", pb.GenerateRequest(text="Once upon a time").SerializeToString()[:-3])


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A first request against `inferd serve`: streams a completion to stdout.

Uses Debian's python3-grpcio and the stubs `make build` generates from
proto/ into build/python:

    PYTHONPATH=build/python /usr/bin/python3 scripts/client.py "Once upon a time"
"""
import argparse
import sys

import grpc

from inferd.v1 import inference_pb2 as pb
from inferd.v1 import inference_pb2_grpc as rpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()

    stub = rpc.InferenceStub(grpc.insecure_channel(args.target))
    request = pb.GenerateRequest(
        text=args.prompt,
        sampling=pb.SamplingParams(temperature=args.temperature, seed=args.seed),
        stopping=pb.StoppingCriteria(max_tokens=args.max_tokens),
    )
    try:
        sys.stdout.write(args.prompt)
        for message in stub.GenerateStream(request, timeout=60):
            sys.stdout.write(message.text)
            sys.stdout.flush()
            if message.finish_reason:
                reason = pb.GenerateResponse.FinishReason.Name(message.finish_reason)
                print(f"\n[{reason}: {message.usage.completion_tokens} tokens in "
                      f"{message.timing.total_seconds:.3f} s]")
    except grpc.RpcError as error:
        print(f"\nerror: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

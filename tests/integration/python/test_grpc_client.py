"""The public gRPC API seen from a Python client, against the real server.

Each test class starts `inferd serve` on free ports (stdout and stderr to a
temporary file, which the tests also read), waits until the readiness health
check says SERVING, and stops it with SIGTERM, expecting exit status 0: the
fixture in inferd_testing.py, beside this file.

Environment (set by ctest, see CMakeLists.txt beside this file):
  INFERD_BINARY      the server binary
  INFERD_SHARED_DIR  the shared folder (golden outputs)
  PYTHONPATH         must hold the stubs generated from proto/ (inferd.v1,
                     google.rpc)

Run by hand from this folder:
  INFERD_BINARY=... INFERD_SHARED_DIR=... PYTHONPATH=BUILD/python \
      /usr/bin/python3 -m unittest -v test_grpc_client
"""

import concurrent.futures
import json
import os
import unittest
import uuid

import grpc

# The shared fixture first: it says how to get the generated stubs if they
# are missing.
from inferd_testing import (RPC_TIMEOUT_S, SOURCE_DIR, STUBS_HINT, ServerTestCase, identity, length_delimited,
                            varint_field)

try:
    from google.rpc import error_details_pb2, status_pb2
    from inferd.v1 import inference_pb2 as pb
except ImportError as error:  # say how to get them, not only that they are missing
    raise ImportError(f"{error}: {STUBS_HINT}") from error

SHARED_DIR = os.environ.get("INFERD_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))
GOLDEN_PATH = os.path.join(SHARED_DIR, "golden", "stories260K_greedy_public.jsonl")

MODEL_NAME = "stories260K"
BOS_ID = 1
EOS_ID = 2
VOCAB_SIZE = 512
CONTEXT = 512

FinishReason = pb.GenerateResponse.FinishReason


def golden_lines():
    with open(GOLDEN_PATH, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def golden_request(golden):
    """The request that reproduces a golden line (greedy, run.c's length)."""
    # run.c makes one token per position from the last prompt token on.
    max_tokens = golden["total_steps"] - len(golden["prompt_ids"]) + 1
    request = pb.GenerateRequest(
        sampling=pb.SamplingParams(temperature=0.0),
        stopping=pb.StoppingCriteria(max_tokens=max_tokens))
    if golden["prompt"]:
        request.text = golden["prompt"]  # the server's tokenizer must give prompt_ids
    else:
        # An empty text prompt is refused (INVALID_ARGUMENT); run.c's ""
        # is BOS alone, which token ids can say.
        request.token_ids.ids.extend(golden["prompt_ids"])
    return request


def expected_golden_ids(golden):
    # A story that ended on BOS lists that BOS last in the golden file (the
    # models README says otherwise; the data is what run.c printed), and the
    # API reports every sampled token, the one that ended the request too.
    ids = golden["output_ids"]
    if golden["stopped_on_bos"]:
        assert ids[-1] == BOS_ID, f"golden line {golden['prompt']!r} stopped on BOS but does not end with it"
    return ids


class GoldenTest(ServerTestCase):
    """The public golden outputs, token for token, through the server."""

    def check_golden(self, golden, messages, ids, text):
        prompt = golden["prompt"]
        self.assertEqual(ids, expected_golden_ids(golden), prompt)
        last = messages[-1]
        self.assertEqual(last.finish_reason, FinishReason.EOS if golden["stopped_on_bos"] else FinishReason.LENGTH,
                         prompt)
        for message in messages[:-1]:
            self.assertEqual(message.finish_reason, FinishReason.UNSPECIFIED, "only the last message finishes")
        # run.c prints the prompt, then the continuation.
        self.assertEqual(prompt + text, golden["stdout_text"], prompt)
        self.assertEqual(last.usage.prompt_tokens, len(golden["prompt_ids"]), prompt)
        self.assertEqual(last.usage.completion_tokens, len(ids), prompt)

    def test_every_golden_line_through_generate_stream(self):
        lines = golden_lines()
        self.assertGreaterEqual(len(lines), 5)
        for golden in lines:
            with self.subTest(prompt=golden["prompt"]):
                messages, ids, text = self.stream(golden_request(golden))
                self.check_golden(golden, messages, ids, text)
                request_ids = {message.request_id for message in messages}
                self.assertEqual(len(request_ids), 1, "one request id, on every message")
                self.assertTrue(request_ids.pop(), "the server names requests sent without an id")

    def test_golden_lines_all_at_once(self):
        # Continuous batching: the same tokens whatever runs beside them.
        lines = golden_lines()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(lines)) as pool:
            results = list(pool.map(lambda golden: self.stream(golden_request(golden)), lines))
        for golden, (messages, ids, text) in zip(lines, results):
            with self.subTest(prompt=golden["prompt"]):
                self.check_golden(golden, messages, ids, text)

    def test_generate_equals_the_concatenated_stream(self):
        requests = {
            "greedy": golden_request(golden_lines()[1]),
            "sampled, seeded, stop string": pb.GenerateRequest(
                text="Lily", sampling=pb.SamplingParams(temperature=0.8, seed=3),
                stopping=pb.StoppingCriteria(max_tokens=120, stop=["park"])),
        }
        for name, request in requests.items():
            with self.subTest(name):
                stream_id = request.request_id = f"py-stream-{uuid.uuid4().hex}"
                messages, ids, text = self.stream(request)
                request.request_id = f"py-unary-{uuid.uuid4().hex}"
                unary = self.stub.Generate(request, timeout=RPC_TIMEOUT_S)
                last = messages[-1]
                self.assertEqual(unary.request_id, request.request_id)
                self.assertEqual({message.request_id for message in messages}, {stream_id})
                self.assertEqual(list(unary.token_ids), ids)
                self.assertEqual(unary.text, text)
                self.assertEqual(unary.finish_reason, last.finish_reason)
                self.assertNotEqual(unary.finish_reason, FinishReason.UNSPECIFIED)
                self.assertEqual(unary.matched_stop, last.matched_stop)
                self.assertEqual(unary.usage.prompt_tokens, last.usage.prompt_tokens)
                self.assertEqual(unary.usage.completion_tokens, len(ids))
                self.assertGreater(unary.timing.total_seconds, 0)


class ValidationTest(ServerTestCase):
    """Malformed requests: INVALID_ARGUMENT, and the message names the field."""

    def invalid_requests(self):
        ok_sampling = pb.SamplingParams(temperature=0.0)
        return [
            ("text", pb.GenerateRequest(text="")),
            ("token_ids.ids[1]", pb.GenerateRequest(token_ids=pb.TokenIds(ids=[BOS_ID, VOCAB_SIZE]))),
            ("sampling.temperature", pb.GenerateRequest(text="Hi", sampling=pb.SamplingParams(temperature=-1.0))),
            ("sampling.temperature",
             pb.GenerateRequest(text="Hi", sampling=pb.SamplingParams(temperature=float("nan")))),
            ("sampling.top_p", pb.GenerateRequest(text="Hi", sampling=pb.SamplingParams(top_p=0.0))),
            ("sampling.top_p", pb.GenerateRequest(text="Hi", sampling=pb.SamplingParams(top_p=1.5))),
            ("stopping.max_tokens",
             pb.GenerateRequest(text="Hi", sampling=ok_sampling, stopping=pb.StoppingCriteria(max_tokens=0))),
            ("stopping.stop", pb.GenerateRequest(
                text="Hi", sampling=ok_sampling,
                stopping=pb.StoppingCriteria(max_tokens=4, stop=[f"s{i}" for i in range(17)]))),
            ("model", pb.GenerateRequest(text="Hi", model="no-such-model")),
            ("prompt", pb.GenerateRequest()),
        ]

    def test_invalid_requests_are_invalid_argument_naming_the_field(self):
        for field, request in self.invalid_requests():
            for rpc_name in ("Generate", "GenerateStream"):
                with self.subTest(field=field, rpc=rpc_name, request=str(request)):
                    self.assert_invalid_argument(getattr(self.stub, rpc_name), request, field)

    def test_the_boundaries_themselves_are_accepted(self):
        # The refusals above are about the values, not the fields: the
        # nearest valid values go through.
        requests = [
            pb.GenerateRequest(text="Hi", model=MODEL_NAME, sampling=pb.SamplingParams(temperature=0.0, top_p=1.0),
                               stopping=pb.StoppingCriteria(max_tokens=1)),
            pb.GenerateRequest(token_ids=pb.TokenIds(ids=[BOS_ID, VOCAB_SIZE - 1]),
                               stopping=pb.StoppingCriteria(max_tokens=2, stop=[f"s{i}" for i in range(16)])),
        ]
        for request in requests:
            with self.subTest(request=str(request)):
                response = self.stub.Generate(request, timeout=RPC_TIMEOUT_S)
                self.assertGreaterEqual(len(response.token_ids), 1)

    def test_prompt_too_long_carries_error_info(self):
        prompt = "Once upon a time"
        prompt_tokens = len(self.stub.Tokenize(pb.TokenizeRequest(text=prompt), timeout=RPC_TIMEOUT_S).token_ids)
        request = pb.GenerateRequest(text=prompt, stopping=pb.StoppingCriteria(max_tokens=600))
        for rpc_name in ("Generate", "GenerateStream"):
            with self.subTest(rpc=rpc_name):
                error = self.assert_invalid_argument(getattr(self.stub, rpc_name), request, "max_tokens")
                # The rich error model: a google.rpc.Status in the
                # grpc-status-details-bin trailer, with an ErrorInfo detail.
                trailers = dict(error.trailing_metadata() or ())
                self.assertIn("grpc-status-details-bin", trailers)
                status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
                self.assertEqual(status.code, grpc.StatusCode.INVALID_ARGUMENT.value[0])
                self.assertEqual(status.message, error.details())
                infos = [detail for detail in status.details if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
                self.assertEqual(len(infos), 1, status)
                info = error_details_pb2.ErrorInfo()
                self.assertTrue(infos[0].Unpack(info))
                self.assertEqual(info.reason, "PROMPT_TOO_LONG")
                self.assertTrue(info.domain)
                self.assertEqual(dict(info.metadata), {
                    "prompt_tokens": str(prompt_tokens),
                    "max_tokens": "600",
                    "max_context_length": str(CONTEXT),
                })

    def test_text_that_is_not_utf8_is_invalid_argument(self):
        # GenerateRequest on the wire: text = 3, stopping = 7 (stop = 3).
        text_field = 3
        stopping_field = 7
        stop_field = 3
        max_tokens_field = 1
        generate = self.server.channel.unary_unary(
            "/inferd.v1.Inference/Generate", request_serializer=identity, response_deserializer=identity)
        generate_stream = self.server.channel.unary_stream(
            "/inferd.v1.Inference/GenerateStream", request_serializer=identity, response_deserializer=identity)
        short = length_delimited(stopping_field, varint_field(max_tokens_field, 2))

        # The same hand-made encoding with valid UTF-8 is served: the
        # refusals below are about the bytes, not the encoding.
        control = length_delimited(text_field, "Hi ✓".encode()) + short
        response = pb.GenerateResponse.FromString(generate(control, timeout=RPC_TIMEOUT_S))
        self.assertEqual(len(response.token_ids), 2)

        cases = {
            "text": length_delimited(text_field, b"\xff\xfe") + short,
            "stopping.stop[0]": length_delimited(text_field, b"Hi") + length_delimited(
                stopping_field, varint_field(max_tokens_field, 2) + length_delimited(stop_field, b"a\xc3")),
        }
        for field, wire in cases.items():
            for name, call in (("Generate", generate), ("GenerateStream", generate_stream)):
                with self.subTest(field=field, rpc=name):
                    error = self.assert_invalid_argument(call, wire, field)
                    self.assertIn("UTF-8", error.details())

    def test_detokenize_refuses_ids_outside_the_vocabulary(self):
        self.assert_invalid_argument(self.stub.Detokenize, pb.DetokenizeRequest(token_ids=[5, VOCAB_SIZE]),
                                     "token_ids[1]")


class SamplingTest(ServerTestCase):
    """Seeded sampling is reproducible whatever else is being served."""

    @staticmethod
    def seeded(seed=7):
        return pb.GenerateRequest(
            text="Once upon a time",
            sampling=pb.SamplingParams(temperature=1.0, top_p=0.9, seed=seed),
            stopping=pb.StoppingCriteria(max_tokens=100, ignore_eos=True))

    def test_seeded_request_alone_and_among_ten_concurrent_requests(self):
        alone = list(self.stub.Generate(self.seeded(), timeout=RPC_TIMEOUT_S).token_ids)
        self.assertEqual(len(alone), 100)
        # A different seed gives a different story: the seed is used, and
        # the request is not silently greedy.
        other_seed = list(self.stub.Generate(self.seeded(seed=8), timeout=RPC_TIMEOUT_S).token_ids)
        self.assertNotEqual(alone, other_seed)

        # Ten others of every kind, started first so that the seeded one
        # joins running batches (and prefix-cache hits on the same prompt).
        prompts = ["Once upon a time", "Lily", "The cat", "One day", "Tom had a"]
        others = []
        for i in range(10):
            sampling = pb.SamplingParams(temperature=[1.0, 0.7, 0.0][i % 3], top_k=[0, 40][i % 2])
            if i % 2:
                sampling.seed = 100 + i
            others.append(pb.GenerateRequest(
                text=prompts[i % len(prompts)], sampling=sampling,
                stopping=pb.StoppingCriteria(max_tokens=150 + 20 * i, ignore_eos=bool(i % 2))))
        calls = [self.stub.Generate.future(request, timeout=RPC_TIMEOUT_S) for request in others[:5]]
        # Streams too: they are scheduled like unary requests but read
        # differently.
        streams = [self.stub.GenerateStream(request, timeout=RPC_TIMEOUT_S) for request in others[5:]]
        seeded = self.stub.Generate.future(self.seeded(), timeout=RPC_TIMEOUT_S)
        # Two at once with the same seed and prompt: neither disturbs the other.
        twin = self.stub.Generate.future(self.seeded(), timeout=RPC_TIMEOUT_S)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(streams)) as pool:
            stream_results = list(pool.map(list, streams))

        self.assertEqual(list(seeded.result().token_ids), alone)
        self.assertEqual(list(twin.result().token_ids), alone)
        for call in calls:
            self.assertNotEqual(call.result().finish_reason, FinishReason.UNSPECIFIED)
        for messages in stream_results:
            self.assertNotEqual(messages[-1].finish_reason, FinishReason.UNSPECIFIED)


class CancellationTest(ServerTestCase):
    """A client that goes away, and Abort, end the request in the engine."""

    @staticmethod
    def long_request(request_id):
        # Long enough (about a second here) that it is still running when
        # the client acts after two messages.
        return pb.GenerateRequest(
            request_id=request_id, text="Once upon a time",
            stopping=pb.StoppingCriteria(max_tokens=500, ignore_eos=True))

    def test_client_cancellation_ends_the_request_as_cancelled(self):
        request_id = f"py-cancel-{uuid.uuid4().hex}"
        call = self.stub.GenerateStream(self.long_request(request_id), timeout=RPC_TIMEOUT_S)
        received = [next(call), next(call)]
        self.assertTrue(all(message.request_id == request_id for message in received))
        call.cancel()
        with self.assertRaises(grpc.RpcError) as caught:
            for _ in call:
                pass
        self.assertEqual(caught.exception.code(), grpc.StatusCode.CANCELLED)

        # The server is fine afterwards.
        response = self.stub.Generate(
            pb.GenerateRequest(text="Lily", stopping=pb.StoppingCriteria(max_tokens=8)), timeout=RPC_TIMEOUT_S)
        self.assertGreaterEqual(len(response.token_ids), 1)

        # ... and the engine ended the request as CANCELLED: it stopped
        # generating for nobody, rather than running to max_tokens.
        ended = self.wait_for_log(rf"request {request_id} (\S+):")
        self.assertIsNotNone(ended, f"no log line for the end of {request_id}:\n{self.server.log()}")
        self.assertEqual(ended.group(1), "CANCELLED", ended.group(0))

    def test_abort_ends_a_named_stream_as_cancelled(self):
        request_id = f"py-abort-{uuid.uuid4().hex}"
        call = self.stub.GenerateStream(self.long_request(request_id), timeout=RPC_TIMEOUT_S)
        self.assertEqual(next(call).request_id, request_id)  # it is running

        self.assertTrue(self.stub.Abort(pb.AbortRequest(request_id=request_id), timeout=RPC_TIMEOUT_S).found)
        with self.assertRaises(grpc.RpcError) as caught:
            for message in call:
                # Messages already on their way may still come; none ends it.
                self.assertEqual(message.finish_reason, FinishReason.UNSPECIFIED)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.CANCELLED, caught.exception.details())

        ended = self.wait_for_log(rf"request {request_id} (\S+):")
        self.assertIsNotNone(ended, f"no log line for the end of {request_id}:\n{self.server.log()}")
        self.assertEqual(ended.group(1), "CANCELLED", ended.group(0))

    def test_a_finished_request_id_is_free_at_once(self):
        # Once a client has seen its request end, the request is gone: Abort
        # does not find it and its id may be used again. The window is
        # short, so try many times.
        for attempt in range(30):
            request = pb.GenerateRequest(request_id=f"py-reuse-{uuid.uuid4().hex}", text="Hi",
                                         stopping=pb.StoppingCriteria(max_tokens=1))
            self.stream(request)
            self.assertFalse(self.stub.Abort(pb.AbortRequest(request_id=request.request_id),
                                             timeout=RPC_TIMEOUT_S).found, f"attempt {attempt}")
            self.stub.Generate(request, timeout=RPC_TIMEOUT_S)  # the same id again
            self.stub.Generate(request, timeout=RPC_TIMEOUT_S)  # and again, right after a unary end

    def test_abort_of_an_unknown_id_is_not_found(self):
        for request_id in (f"py-unknown-{uuid.uuid4().hex}", ""):
            with self.subTest(request_id=request_id):
                response = self.stub.Abort(pb.AbortRequest(request_id=request_id), timeout=RPC_TIMEOUT_S)
                self.assertFalse(response.found)


class ModelAndTokenizerTest(ServerTestCase):
    """GetModelInfo, Tokenize and Detokenize."""

    def test_model_info(self):
        info = self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=RPC_TIMEOUT_S)
        self.assertEqual(info.name, MODEL_NAME)
        self.assertEqual(info.architecture, "llama")
        self.assertEqual(info.vocab_size, VOCAB_SIZE)
        self.assertEqual(info.max_context_length, CONTEXT)
        self.assertEqual(info.bos_token_id, BOS_ID)
        # This model ends its stories with BOS, so both end generation.
        self.assertIn(EOS_ID, info.eos_token_ids)
        self.assertIn(BOS_ID, info.eos_token_ids)
        self.assertIn(info.backend, ("cpu", "cuda"))
        self.assertTrue(info.dtype)
        self.assertGreater(info.kv_block_size, 0)
        self.assertGreater(info.kv_num_blocks, 0)
        self.assertGreater(info.max_num_seqs, 0)
        self.assertRegex(info.server_version, r"^\d+\.\d+\.\d+")

    def test_tokenize_gives_the_reference_prompt_ids(self):
        for golden in golden_lines():
            if not golden["prompt"]:
                continue
            with self.subTest(prompt=golden["prompt"]):
                response = self.stub.Tokenize(pb.TokenizeRequest(text=golden["prompt"]), timeout=RPC_TIMEOUT_S)
                self.assertEqual(list(response.token_ids), golden["prompt_ids"])
                self.assertEqual(len(response.pieces), len(response.token_ids))
                without_bos = self.stub.Tokenize(pb.TokenizeRequest(text=golden["prompt"], add_bos=False),
                                                 timeout=RPC_TIMEOUT_S)
                self.assertEqual(list(without_bos.token_ids), golden["prompt_ids"][1:])

    def test_detokenize_inverts_tokenize(self):
        for text in ("Hello world", "Once upon a time, there was a cat.", "naïve ✓ 日本"):
            with self.subTest(text=text):
                ids = list(self.stub.Tokenize(pb.TokenizeRequest(text=text), timeout=RPC_TIMEOUT_S).token_ids)
                self.assertEqual(ids[0], BOS_ID)
                detokenized = self.stub.Detokenize(pb.DetokenizeRequest(token_ids=ids), timeout=RPC_TIMEOUT_S)
                self.assertEqual(detokenized.text, text)

    def test_detokenize_of_special_tokens_and_the_dummy_prefix(self):
        def detokenize(ids):
            return self.stub.Detokenize(pb.DetokenizeRequest(token_ids=ids), timeout=RPC_TIMEOUT_S).text

        ids = list(self.stub.Tokenize(pb.TokenizeRequest(text="Hello world"), timeout=RPC_TIMEOUT_S).token_ids)
        # BOS and EOS decode to no text.
        self.assertEqual(detokenize([BOS_ID, EOS_ID]), "")
        self.assertEqual(detokenize(ids + [EOS_ID]), "Hello world")
        # SentencePiece's dummy-prefix space is dropped only after BOS (as
        # llama2.c decodes): without BOS the first piece keeps it.
        self.assertEqual(detokenize(ids[1:]), " Hello world")
        self.assertEqual(detokenize([]), "")


if __name__ == "__main__":
    unittest.main()

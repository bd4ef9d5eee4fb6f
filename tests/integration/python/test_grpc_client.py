"""The public gRPC API seen from a Python client, against the real server.

Each test class starts `inferd serve` on free ports (stdout and stderr to a
temporary file, which the tests also read), waits until the readiness health
check says SERVING, and stops it with SIGTERM, expecting exit status 0.

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
import re
import signal
import subprocess
import tempfile
import time
import unittest
import uuid

import grpc

try:
    from google.rpc import error_details_pb2, status_pb2
    from inferd.v1 import inference_pb2 as pb
    from inferd.v1 import inference_pb2_grpc as pb_grpc
except ImportError as error:  # say how to get them, not only that they are missing
    raise ImportError(
        f"{error}: put the stubs generated from proto/ on PYTHONPATH "
        "(the build writes them to BUILD_DIR/python; ctest sets this)") from error

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.normpath(os.path.join(_HERE, "..", "..", ".."))
INFERD_BINARY = os.environ.get("INFERD_BINARY", os.path.join(_REPO, "build", "inferd"))
SHARED_DIR = os.environ.get("INFERD_SHARED_DIR", os.path.join(_REPO, "..", "shared"))
GOLDEN_PATH = os.path.join(SHARED_DIR, "golden", "stories260K_greedy_public.jsonl")

# Generous: the machines that run this also compile, and a loaded CPU slows
# the server's start and every step.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
RPC_TIMEOUT_S = 60

READINESS_SERVICE = "inferd.v1.Inference"
MODEL_NAME = "stories260K"
BOS_ID = 1
EOS_ID = 2
VOCAB_SIZE = 512
CONTEXT = 512

FinishReason = pb.GenerateResponse.FinishReason


def _identity(data):
    return data


def _encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field_number, payload):
    """One length-delimited protobuf field (wire type 2), by hand.

    The protobuf library refuses to put bytes that are not UTF-8 in a string
    field, and the grpc.health.v1 stubs are not installed: both requests are
    built from the wire format instead.
    """
    return _encode_varint(field_number << 3 | 2) + _encode_varint(len(payload)) + payload


def _varint_field(field_number, value):
    return _encode_varint(field_number << 3 | 0) + _encode_varint(value)


class InferdServer:
    """One `inferd serve` process on free ports, and its log."""

    def __init__(self, *extra_args):
        self._log = tempfile.NamedTemporaryFile(prefix="inferd-python-test-", suffix=".log", delete=False)
        self.log_path = self._log.name
        # Where the server logs (stdout or stderr) is not part of the API:
        # keep both, in order, in one file.
        self.process = subprocess.Popen(
            [INFERD_BINARY, "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", *extra_args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.port = None
        self.channel = None

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_until_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.port is None:
            self._check_alive("before it listened")
            match = re.search(r"listening on [^\s:]+:(\d+)", self.log())
            if match:
                self.port = int(match.group(1))
            elif time.monotonic() > deadline:
                raise AssertionError(f"no 'listening on HOST:PORT' in {START_TIMEOUT_S}s:\n{self.log()}")
            else:
                time.sleep(0.05)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        # Readiness, as a load balancer would see it: the health service
        # says SERVING for the inference service once the model is loaded.
        while self.health(READINESS_SERVICE) != "SERVING":
            self._check_alive("before it was ready")
            if time.monotonic() > deadline:
                raise AssertionError(f"not SERVING after {START_TIMEOUT_S}s:\n{self.log()}")
            time.sleep(0.05)

    def health(self, service):
        """grpc.health.v1.Health/Check for `service`: its status name, or the
        gRPC code name if the call failed (e.g. UNAVAILABLE while the port
        is not yet served)."""
        check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=_identity, response_deserializer=_identity)
        try:
            response = check(_length_delimited(1, service.encode()), timeout=5)
        except grpc.RpcError as error:
            return error.code().name
        # HealthCheckResponse { ServingStatus status = 1; }: empty is UNKNOWN (0).
        status = 0
        if response[:1] == b"\x08":
            status = response[1]
        return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(status, str(status))

    def stop(self):
        """SIGTERM, as an orchestrator stops it; returns the exit status."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the server did not exit within {STOP_TIMEOUT_S}s of SIGTERM:\n{self.log()}")
        return self.process.returncode

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def remove_log(self):
        self._log.close()
        os.unlink(self.log_path)

    def _check_alive(self, when):
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode} {when}:\n{self.log()}")


class ServerTestCase(unittest.TestCase):
    """A fresh server per test class, stopped with SIGTERM (exit 0 expected)."""

    server = None
    stub = None

    @classmethod
    def setUpClass(cls):
        if not os.access(INFERD_BINARY, os.X_OK):
            raise unittest.SkipTest(f"no server binary at {INFERD_BINARY} (set INFERD_BINARY)")
        cls.server = InferdServer()
        # If anything below fails, tearDownClass does not run: never leave a
        # server behind.
        cls.addClassCleanup(cls.server.kill)
        cls.server.wait_until_ready()
        cls.stub = pb_grpc.InferenceStub(cls.server.channel)

    @classmethod
    def tearDownClass(cls):
        server = cls.server
        status = server.stop()
        if status != 0:
            raise AssertionError(f"the server exited with {status} after SIGTERM (expected 0):\n{server.log()}")
        server.remove_log()

    # Helpers.

    def stream(self, request, timeout=RPC_TIMEOUT_S):
        """Runs GenerateStream to the end: (messages, concatenated ids, text)."""
        messages = list(self.stub.GenerateStream(request, timeout=timeout))
        ids = [token for message in messages for token in message.token_ids]
        return messages, ids, "".join(message.text for message in messages)

    def assert_invalid_argument(self, call, request, field):
        """`call(request)` fails with INVALID_ARGUMENT whose message names `field`.
        Returns the error (a grpc.Call: trailers, details)."""
        with self.assertRaises(grpc.RpcError) as caught:
            result = call(request, timeout=RPC_TIMEOUT_S)
            if not isinstance(result, pb.GenerateResponse):  # a stream fails when read
                list(result)
        error = caught.exception
        self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT, error.details())
        self.assertIn(field, error.details())
        return error

    def wait_for_log(self, pattern, timeout=10):
        """The server logs a request's end after its last message: poll."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.server.log())
            if match or time.monotonic() > deadline:
                return match
            time.sleep(0.05)


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
            "/inferd.v1.Inference/Generate", request_serializer=_identity, response_deserializer=_identity)
        generate_stream = self.server.channel.unary_stream(
            "/inferd.v1.Inference/GenerateStream", request_serializer=_identity, response_deserializer=_identity)
        short = _length_delimited(stopping_field, _varint_field(max_tokens_field, 2))

        # The same hand-made encoding with valid UTF-8 is served: the
        # refusals below are about the bytes, not the encoding.
        control = _length_delimited(text_field, "Hi ✓".encode()) + short
        response = pb.GenerateResponse.FromString(generate(control, timeout=RPC_TIMEOUT_S))
        self.assertEqual(len(response.token_ids), 2)

        cases = {
            "text": _length_delimited(text_field, b"\xff\xfe") + short,
            "stopping.stop[0]": _length_delimited(text_field, b"Hi") + _length_delimited(
                stopping_field, _varint_field(max_tokens_field, 2) + _length_delimited(stop_field, b"a\xc3")),
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

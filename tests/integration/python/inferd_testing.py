"""The fixture the Python integration tests share: the real `inferd serve`.

InferdServer starts the binary from $INFERD_BINARY on free ports (gRPC and
metrics; stdout and stderr to one temporary file, which the tests also read),
finds both ports in its log, waits until the readiness health check says
SERVING and the engine's families are in /metrics, and stops it with SIGTERM.
ServerTestCase runs one such server per test class (with the class's
EXTRA_ARGS) and expects exit status 0 after SIGTERM.

Also here: the small helpers more than one test file needs (polling, HTTP,
a parse of the Prometheus text format, protobuf fields by hand).

Environment (set by ctest):
  INFERD_BINARY      the server binary (default: SOURCE/build/inferd)
  INFERD_SOURCE_DIR  the repository (default: three folders up from here)
  PYTHONPATH         must hold the stubs generated from proto/ (inferd.v1,
                     google.rpc)
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import grpc

# Says how to get the generated stubs, not only that they are missing.
STUBS_HINT = ("put the stubs generated from proto/ on PYTHONPATH "
              "(the build writes them to BUILD_DIR/python; ctest sets this)")

try:
    from inferd.v1 import inference_pb2 as pb
    from inferd.v1 import inference_pb2_grpc as pb_grpc
except ImportError as error:
    raise ImportError(f"{error}: {STUBS_HINT}") from error

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("INFERD_SOURCE_DIR") or os.path.normpath(os.path.join(_HERE, "..", "..", ".."))
INFERD_BINARY = os.environ.get("INFERD_BINARY") or os.path.join(SOURCE_DIR, "build", "inferd")

# Generous: the machines that run this also compile, and a loaded CPU slows
# the server's start and every step.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
RPC_TIMEOUT_S = 60
SETTLE_TIMEOUT_S = 20

# The service whose health status is readiness (the server's kReadinessService).
READINESS_SERVICE = "inferd.v1.Inference"


# --- polling and HTTP -------------------------------------------------------

def wait_for(what, predicate, timeout=SETTLE_TIMEOUT_S, interval=0.05):
    """Polls `predicate` until it returns a true value; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url, timeout=10, context=None, headers=None):
    """The body of GET url; `context` an ssl.SSLContext for https."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return response.read().decode("utf-8")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- /metrics -------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Scrape:
    """One parse of the Prometheus text format: samples and `# TYPE`s."""

    def __init__(self, text):
        self.types = {}  # family name -> counter, gauge, histogram, ...
        self.samples = []  # (name, {label: value}, float)
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                self.types[name] = kind.strip()
            elif line and not line.startswith("#"):
                match = _SAMPLE.match(line)
                if match is None:
                    raise AssertionError(f"cannot parse metrics line {line!r}")
                labels = dict(_LABEL.findall(match.group(2) or ""))
                self.samples.append((match.group(1), labels, float(match.group(3))))

    def value(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
        return sum(v for n, l, v in self.samples
                   if n == name and all(l.get(k) == want for k, want in labels.items()))


# --- protobuf by hand -------------------------------------------------------

def identity(data):
    """A (de)serializer for raw bytes on a grpc.Channel's unary_unary/unary_stream."""
    return data


def encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field_number, payload):
    """One length-delimited protobuf field (wire type 2), by hand.

    The protobuf library refuses to put bytes that are not UTF-8 in a string
    field, and the grpc.health.v1 stubs are not installed: such requests are
    built from the wire format instead.
    """
    return encode_varint(field_number << 3 | 2) + encode_varint(len(payload)) + payload


def varint_field(field_number, value):
    return encode_varint(field_number << 3 | 0) + encode_varint(value)


# --- the server -------------------------------------------------------------

class ServerExited(AssertionError):
    """The server process ended while it was expected to run."""


class InferdServer:
    """One `inferd serve` process on free ports (gRPC, metrics, HTTP), and its log."""

    def __init__(self, *extra_args, credentials=None, target_name="localhost", metrics_tls=None, metrics_key=None):
        # credentials: grpc.ssl_channel_credentials(...) for a TLS server;
        # its certificate must name `target_name`. metrics_tls: an
        # ssl.SSLContext for --metrics-tls; metrics_key: the API key scrapes
        # send (--metrics-require-key).
        self.credentials = credentials
        self.metrics_tls = metrics_tls
        self.metrics_headers = {"Authorization": f"Bearer {metrics_key}"} if metrics_key else None
        self.target_name = target_name
        self._log = tempfile.NamedTemporaryFile(prefix="inferd-python-test-", suffix=".log", delete=False)
        self.log_path = self._log.name
        # Where the server logs (stdout or stderr) is not part of the API:
        # keep both, in order, in one file.
        self.process = subprocess.Popen(
            [INFERD_BINARY, "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--http-port", "0",
             *extra_args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.port = None
        self.metrics_port = None
        self.http_port = None  # the OpenAI HTTP API; None if the args turned it off
        self.channel = None
        self.stub = None

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_until_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S

        def ports():
            self._check_alive("before it listened")
            log = self.log()
            grpc_port = re.search(r"listening on [^\s:]+:(\d+)", log)
            metrics_port = re.search(r"metrics on https?://[^\s/]+:(\d+)/metrics", log)
            return grpc_port and metrics_port and (int(grpc_port.group(1)), int(metrics_port.group(1)))

        try:
            self.port, self.metrics_port = wait_for("the server's ports in its log", ports, START_TIMEOUT_S)
        except ServerExited:
            raise
        except AssertionError as error:  # the timeout: say what was looked for, and show the log
            raise AssertionError(f"{error} ('listening on HOST:PORT', 'metrics on URL'):\n{self.log()}") from None
        http_port = re.search(r"openai api on http://[^\s/]+:(\d+)/v1", self.log())
        self.http_port = int(http_port.group(1)) if http_port else None
        self.channel = self.new_channel()
        self.stub = pb_grpc.InferenceStub(self.channel)

        def ready():
            # Readiness, as a load balancer would see it: the health service
            # says SERVING for the inference service once the model is loaded
            # (the server attaches the engine to the service and to /metrics
            # before); the engine's families are in /metrics then.
            self._check_alive("before it was ready")
            if self.health(READINESS_SERVICE) != "SERVING":
                return False
            return "inferd_model_info" in self.scrape().types

        try:
            wait_for("the server to load its model (SERVING)", ready, max(1, deadline - time.monotonic()))
        except ServerExited:
            raise
        except AssertionError as error:  # the timeout: show the log
            raise AssertionError(f"{error}:\n{self.log()}") from None

    def new_channel(self, credentials=None):
        """A channel to the server, with its credentials unless others are given."""
        credentials = credentials or self.credentials
        if credentials is None:
            return grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return grpc.secure_channel(f"127.0.0.1:{self.port}", credentials,
                                   options=[("grpc.ssl_target_name_override", self.target_name)])

    def health(self, service):
        """grpc.health.v1.Health/Check for `service`: its status name, or the
        gRPC code name if the call failed (e.g. UNAVAILABLE while the port
        is not yet served)."""
        check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=identity, response_deserializer=identity)
        try:
            response = check(length_delimited(1, service.encode()), timeout=5)
        except grpc.RpcError as error:
            return error.code().name
        # HealthCheckResponse { ServingStatus status = 1; }: empty is UNKNOWN (0).
        status = 0
        if response[:1] == b"\x08":
            status = response[1]
        return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(status, str(status))

    def metrics_url(self, path="/metrics"):
        scheme = "https" if self.metrics_tls else "http"
        return f"{scheme}://127.0.0.1:{self.metrics_port}{path}"

    def scrape(self):
        return Scrape(http_get(self.metrics_url(), context=self.metrics_tls, headers=self.metrics_headers))

    def stop(self):
        """SIGTERM, as an orchestrator stops it; returns the exit status."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
            self.stub = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
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
            raise ServerExited(f"the server exited with {self.process.returncode} {when}:\n{self.log()}")


class ServerTestCase(unittest.TestCase):
    """A fresh server per test class (EXTRA_ARGS), stopped with SIGTERM: exit 0 expected."""

    EXTRA_ARGS = ()
    server = None
    stub = None

    @classmethod
    def setUpClass(cls):
        if not os.access(INFERD_BINARY, os.X_OK):
            raise unittest.SkipTest(f"no server binary at {INFERD_BINARY} (set INFERD_BINARY)")
        cls.server = InferdServer(*cls.EXTRA_ARGS)
        # If anything below fails, tearDownClass does not run: never leave a
        # server behind.
        cls.addClassCleanup(cls.server.kill)
        cls.server.wait_until_ready()
        cls.stub = cls.server.stub

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
        """The server logs a request's end after its last message: poll.
        Returns the match, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.server.log())
            if match or time.monotonic() > deadline:
                return match
            time.sleep(0.05)

"""The CPU image (`make image`), run with podman: `make test-image`.

Starts localhost/inferd:latest with --network host on free ports (runc, capped
ulimits, as scripts/build_image.sh builds it) and checks:
  - gRPC health SERVING, a generation through the Python client, /metrics,
    /healthz and /readyz;
  - inferd is PID 1 and runs as a non-root user;
  - the image size (printed; under 300 MB without the bundled models);
  - `podman stop` during a live stream: the stream finishes whole, the
    container drains and exits 0 within the stop timeout.

Environment: INFERD_IMAGE (default localhost/inferd:latest), PYTHONPATH (the
generated stubs and tests/integration/python).
"""

import os
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc

from inferd_testing import (READINESS_SERVICE, Scrape, free_port, http_get, identity, length_delimited, pb,
                            pb_grpc, wait_for)

IMAGE = os.environ.get("INFERD_IMAGE", "localhost/inferd:latest")
PODMAN = ["podman", "--runtime", "runc"]
RUN_FLAGS = ["--network", "host", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
SIZE_LIMIT_MB = 300
DRAIN_TIMEOUT_S = 20
STOP_TIMEOUT_S = DRAIN_TIMEOUT_S + 10  # as a pod's grace period: above the drain timeout


def podman(*args, check=True, timeout=120):
    run = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({run.returncode}):\n{run.stderr}")
    return run.stdout.strip()


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class Container:
    """One detached container of IMAGE running `inferd serve ARGS` on free host ports."""

    def __init__(self, name, *serve_args):
        self.name = name
        self.port = free_port()
        self.metrics_port = free_port()
        podman("rm", "-f", "-i", name)
        podman("run", "-d", "--name", name, *RUN_FLAGS, IMAGE, "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--metrics-port", str(self.metrics_port),
               "--drain-timeout-seconds", str(DRAIN_TIMEOUT_S), *serve_args)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.InferenceStub(self.channel)

    def logs(self):
        run = subprocess.run([*PODMAN, "logs", self.name], capture_output=True, text=True, timeout=60)
        return run.stdout + run.stderr

    def state(self, field):
        return podman("inspect", "--format", "{{.State." + field + "}}", self.name)

    def health(self, service):
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=identity,
                                         response_deserializer=identity)
        try:
            response = check(length_delimited(1, service.encode()), timeout=5)
        except grpc.RpcError as error:
            return error.code().name
        return "SERVING" if response[:2] == b"\x08\x01" else "NOT_SERVING"

    def wait_ready(self):
        def ready():
            if self.state("Running") != "true":
                raise AssertionError(f"the container stopped ({self.state('ExitCode')}):\n{self.logs()}")
            return self.health(READINESS_SERVICE) == "SERVING"
        try:
            wait_for("the container to be SERVING", ready, timeout=120, interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None

    def exec(self, *command):
        return podman("exec", self.name, *command)

    def remove(self):
        self.channel.close()
        podman("rm", "-f", "-i", self.name, check=False)


class ImageTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if subprocess.run([*PODMAN, "image", "exists", IMAGE]).returncode != 0:
            raise AssertionError(f"no image {IMAGE}: run `make image`")
        cls.server = Container(f"inferd-test-{os.getpid()}")
        cls.addClassCleanup(cls.server.remove)
        cls.server.wait_ready()

    def test_generates_through_the_python_client(self):
        request = pb.GenerateRequest(text="Once upon a time")
        request.sampling.temperature = 0
        request.stopping.max_tokens = 32
        messages = list(self.server.stub.GenerateStream(request, timeout=60))
        tokens = sum(len(m.token_ids) for m in messages)
        self.assertGreater(tokens, 0)
        self.assertNotEqual(messages[-1].finish_reason, pb.GenerateResponse.UNSPECIFIED)
        self.assertTrue("".join(m.text for m in messages).strip())
        info = self.server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        self.assertEqual(info.backend, "cpu")

    def test_metrics_healthz_and_readyz(self):
        base = f"http://127.0.0.1:{self.server.metrics_port}"
        scrape = Scrape(http_get(f"{base}/metrics"))
        self.assertEqual(scrape.types.get("inferd_requests_waiting"), "gauge")
        self.assertEqual(scrape.value("inferd_model_info"), 1)
        self.assertEqual(http_status(f"{base}/healthz"), 200)
        self.assertEqual(http_status(f"{base}/readyz"), 200)

    def test_inferd_is_pid_1_and_not_root(self):
        status = dict(line.split(":", 1) for line in self.server.exec("cat", "/proc/1/status").splitlines())
        self.assertEqual(status["Name"].strip(), "inferd")
        real, effective = status["Uid"].split()[:2]
        self.assertNotEqual(real, "0")
        self.assertNotEqual(effective, "0")
        self.assertEqual(podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE), "10001:10001")

    def test_image_size(self):
        size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE))
        models = int(self.server.exec("du", "-sb", "/opt/inferd/models").split()[0])
        print(f"\nimage {IMAGE}: {size / 1e6:.1f} MB, of which bundled models {models / 1e6:.1f} MB")
        self.assertLess((size - models) / 1e6, SIZE_LIMIT_MB)


class StopDuringStreamTest(unittest.TestCase):
    """`podman stop` (SIGTERM to PID 1) while a stream runs: drain, exit 0."""

    def test_stream_finishes_and_container_exits_0(self):
        # Generated weights at a real shape, so that the stream lasts.
        server = Container(f"inferd-stop-test-{os.getpid()}", "--model", "dummy:llama-110m",
                           "--kv-cache-memory-mb", "256")
        self.addCleanup(server.remove)
        server.wait_ready()
        request = pb.GenerateRequest(text="Once upon a time")
        request.sampling.temperature = 0
        request.stopping.max_tokens = 64
        request.stopping.ignore_eos = True
        stream = server.stub.GenerateStream(request, timeout=120)
        first = next(stream)
        self.assertTrue(first.token_ids, "the stream began")

        stopped = {}

        def stop():
            start = time.monotonic()
            stopped["run"] = subprocess.run([*PODMAN, "stop", "-t", str(STOP_TIMEOUT_S), server.name],
                                            capture_output=True, text=True, timeout=STOP_TIMEOUT_S + 60)
            stopped["seconds"] = time.monotonic() - start

        stopper = threading.Thread(target=stop)
        stopper.start()
        rest = list(stream)  # raises if the stream ends with an error
        stopper.join()
        self.assertNotEqual(rest, [], "podman stop came after the stream had ended: make it longer")
        tokens = len(first.token_ids) + sum(len(m.token_ids) for m in rest)
        self.assertEqual(tokens, 64)
        self.assertEqual(rest[-1].finish_reason, pb.GenerateResponse.LENGTH)
        self.assertEqual(stopped["run"].returncode, 0, stopped["run"].stderr)
        self.assertLess(stopped["seconds"], STOP_TIMEOUT_S, "podman had to kill it")
        self.assertEqual(server.state("ExitCode"), "0", server.logs())
        logs = server.logs()
        self.assertIn("draining", logs)
        self.assertIn("drained; exiting", logs)


if __name__ == "__main__":
    unittest.main()

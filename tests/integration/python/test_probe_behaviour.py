"""What the outside probe of issue 12 found holding, kept so: 500 streams
cancelled at random points, a client killed with SIGKILL mid-stream, and
1,000 gRPC connections at once, against the real `inferd serve`. After each,
the server must be serving, with its KV blocks, running and waiting requests
back to 0.
"""

import concurrent.futures
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import grpc

from inferd_testing import RPC_TIMEOUT_S, ServerTestCase, pb, pb_grpc, wait_for

IDLE_METRICS = ("inferd_kv_cache_blocks_used", "inferd_requests_running", "inferd_requests_waiting")


def long_request(request_id, max_tokens=300):
    return pb.GenerateRequest(request_id=request_id, text="Once upon a time",
                              stopping=pb.StoppingCriteria(max_tokens=max_tokens, ignore_eos=True))


class ProbeBehaviourTest(ServerTestCase):
    # Room for every stream in the queue: this is about cancels, not refusals.
    EXTRA_ARGS = ("--max-queued-requests", "1000", "--max-num-seqs", "32")

    def assert_idle_and_serving(self):
        def idle():
            scrape = self.server.scrape()
            values = {name: scrape.value(name) for name in IDLE_METRICS}
            return values if not any(values.values()) else None

        try:
            wait_for("KV blocks, running and waiting back to 0", idle, timeout=30)
        except AssertionError:
            scrape = self.server.scrape()
            self.fail(f"not idle: { {name: scrape.value(name) for name in IDLE_METRICS} }")
        response = self.stub.Generate(pb.GenerateRequest(text="Lily", stopping=pb.StoppingCriteria(max_tokens=4)),
                                      timeout=RPC_TIMEOUT_S)
        self.assertGreaterEqual(len(response.token_ids), 1)

    def cancelled_total(self):
        return self.server.scrape().value("inferd_requests_total", status="cancelled")

    def test_500_streams_cancelled_at_random_points(self):
        rng = random.Random(12)
        plans = [(f"probe-cancel-{i}-{uuid.uuid4().hex[:8]}", rng.randint(0, 6), rng.uniform(0, 0.05))
                 for i in range(500)]
        # Ten connections, fifty streams multiplexed on each.
        channels = [self.server.new_channel() for _ in range(10)]
        stubs = [pb_grpc.InferenceStub(channel) for channel in channels]
        cancelled_before = self.cancelled_total()

        def run(index):
            request_id, after, pause = plans[index]
            call = stubs[index % len(stubs)].GenerateStream(long_request(request_id), timeout=RPC_TIMEOUT_S)
            received = 0
            try:
                # Cancel before any message (queued or not yet read), or
                # after a few.
                while received < after:
                    next(call)
                    received += 1
                time.sleep(pause)
                call.cancel()
                for _ in call:
                    pass
                return "OK"
            except grpc.RpcError as error:
                return error.code().name

        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
                statuses = list(pool.map(run, range(len(plans))))
        finally:
            for channel in channels:
                channel.close()
        # A 300-token stream cannot finish within a few messages: each one
        # ends CANCELLED, on the client and on the server.
        self.assertEqual(set(statuses), {"CANCELLED"}, statuses)
        self.assert_idle_and_serving()
        # Cancels that reached the server are counted as cancels (the ones
        # cancelled before the server read them may never have reached it).
        mid_stream = sum(1 for _, after, _ in plans if after > 0)
        counted = self.cancelled_total() - cancelled_before
        self.assertGreaterEqual(counted, mid_stream)
        self.assertLessEqual(counted, len(plans))
        self.assertEqual(self.server.scrape().value("inferd_requests_total", status="internal"), 0)

    def test_client_killed_with_sigkill_mid_stream(self):
        request_id = f"probe-kill-{uuid.uuid4().hex}"
        # A separate process reads one message, says so, and waits: the
        # kernel closes its connection when it is killed, with no goodbye.
        client = textwrap.dedent(f"""
            import sys, time, grpc
            from inferd.v1 import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
            channel = grpc.insecure_channel("127.0.0.1:{self.server.port}")
            call = pb_grpc.InferenceStub(channel).GenerateStream(pb.GenerateRequest(
                request_id="{request_id}", text="Once upon a time",
                stopping=pb.StoppingCriteria(max_tokens=500, ignore_eos=True)), timeout=120)
            next(call)
            print("streaming", flush=True)
            time.sleep(120)
        """)
        process = subprocess.Popen([sys.executable, "-c", client], stdout=subprocess.PIPE, env=os.environ.copy())
        try:
            self.assertEqual(process.stdout.readline().strip(), b"streaming")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=RPC_TIMEOUT_S)
        finally:
            process.kill()
            process.stdout.close()
        ended = self.wait_for_log(rf"request {request_id} (\S+):", timeout=30)
        self.assertIsNotNone(ended, f"no log line for the end of {request_id}:\n{self.server.log()}")
        self.assertEqual(ended.group(1), "CANCELLED", ended.group(0))
        self.assert_idle_and_serving()

    def test_1000_connections_at_once(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096 and hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
            self.skipTest(f"this process may open only {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} files")
        # A connection each (no subchannel shared between channels), all
        # open together, each served one call.
        channels = [grpc.insecure_channel(f"127.0.0.1:{self.server.port}",
                                          options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(1000)]
        try:
            futures = [pb_grpc.InferenceStub(channel).Tokenize.future(pb.TokenizeRequest(text=f"Lily {i}"),
                                                                       timeout=RPC_TIMEOUT_S)
                       for i, channel in enumerate(channels)]
            results = [future.result() for future in futures]
            self.assertTrue(all(len(result.token_ids) >= 2 for result in results))
            # They really are 1,000 connections: the server holds a socket
            # for each.
            sockets = sum(1 for fd in os.listdir(f"/proc/{self.server.process.pid}/fd")
                          if os.readlink(f"/proc/{self.server.process.pid}/fd/{fd}").startswith("socket:"))
            self.assertGreaterEqual(sockets, 1000)
            # With all of them still open, a generation is served.
            response = self.stub.Generate(pb.GenerateRequest(text="Lily", stopping=pb.StoppingCriteria(max_tokens=4)),
                                          timeout=RPC_TIMEOUT_S)
            self.assertGreaterEqual(len(response.token_ids), 1)
        finally:
            for channel in channels:
                channel.close()
        self.assert_idle_and_serving()

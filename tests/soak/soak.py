#!/usr/bin/python3
"""Soak: a long mixed load against the real `inferd serve` (issue 12).

Clients on connections of their own send streaming and unary Generate calls
with mixed prompt and output lengths, priorities and sampling settings, and
end them at random: read to the end, cancel after a few messages, a deadline,
an Abort from the same connection; a few bad requests (invalid fields, bytes
that are not a message, text that is not UTF-8) and the small methods
(Tokenize, Detokenize, GetModelInfo, Abort of an unknown id) in between. The
KV cache is small, so sequences are preempted and the queue fills.

It fails (exit 1, saying why) unless:
  - every call ends with a status API.md lists for it, and the one its fate
    allows (a cancelled call CANCELLED, a bad request INVALID_ARGUMENT, ...);
  - the server counts every Generate call once, by such a status, never
    `internal` or `unavailable` while it is not draining;
  - after the load, KV blocks used, requests running and waiting are all 0;
  - RSS grows by less than --max-rss-growth-mb from the end of warm-up to the
    end of the run;
  - the server exits 0 on SIGTERM; with --sanitized, its log holds no
    AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer or
    ThreadSanitizer report.
It prints the figures at the end: requests by kind and status, cancels,
aborts, RSS start -> end, blocks at the end.

  soak.py --binary build/inferd --stubs build/python [--duration 600]
"""

import argparse
import collections
import os
import random
import re
import sys
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE_DIR = os.path.normpath(os.path.join(_HERE, "..", ".."))

# Statuses API.md gives for Generate and GenerateStream (UNAUTHENTICATED
# needs API keys, which this run does not turn on).
API_STATUSES = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED", "UNAVAILABLE"}
# inferd_requests_total{status} values allowed while the server is not
# draining.
SERVER_STATUSES = {"ok", "invalid_argument", "resource_exhausted", "cancelled", "deadline_exceeded"}
SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                              r"WARNING: ThreadSanitizer|SUMMARY: (Address|Undefined|Thread)Sanitizer")

WORDS = ("once upon a time there was a little girl named Lily she liked to play in the park with her dog "
         "one day the sun was bright and the sky was blue they saw a big tree and a small bird").split()
STOP_STRINGS = (".", "the", "Lily", "\n")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(_SOURCE_DIR, "build", "inferd"))
    parser.add_argument("--stubs", default=os.path.join(_SOURCE_DIR, "build", "python"),
                        help="the Python stubs the build generates from proto/ (BUILD_DIR/python)")
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before the RSS baseline (default: a quarter of the run, at most 60)")
    parser.add_argument("--clients", type=int, default=12, help="client threads, each on its own connection")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-rss-growth-mb", type=float, default=50)
    parser.add_argument("--sanitized", action="store_true",
                        help="the server is a sanitizer build: any report in its log fails the run")
    parser.add_argument("--server-args", default="--kv-cache-blocks 32 --block-size 16 --max-num-seqs 8 "
                        "--max-queued-requests 16 --drain-timeout-seconds 30",
                        help="engine settings: a small KV cache, so sequences are preempted")
    return parser.parse_args()


ARGS = parse_args()
sys.path[:0] = [ARGS.stubs, os.path.join(_SOURCE_DIR, "tests", "integration", "python")]
os.environ.setdefault("INFERD_BINARY", ARGS.binary)
os.environ.setdefault("INFERD_SOURCE_DIR", _SOURCE_DIR)
if ARGS.sanitized:
    # A small ASan quarantine, so freed memory held for use-after-free checks
    # does not read as growth.
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    os.environ["ASAN_OPTIONS"] += ":quarantine_size_mb=16:thread_local_quarantine_size_kb=256"

import grpc  # noqa: E402  (after the stub path is set)
import inferd_testing  # noqa: E402
from inferd_testing import identity, length_delimited, pb, pb_grpc, varint_field  # noqa: E402


class Figures:
    """What the clients did and saw, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_status = collections.Counter()  # (kind, status)
        self.fates = collections.Counter()  # fate -> calls
        self.generate_calls = 0
        self.unsent_possible = 0  # calls that may end before the server reads them
        self.aborts_found = 0
        self.aborts_missed = 0
        self.failures = []

    def record(self, kind, fate, status):
        with self.lock:
            self.by_status[(kind, status)] += 1
            self.fates[fate] += 1

    def fail(self, message):
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(message)


def prompt_text(rng, words):
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()


class Client(threading.Thread):
    """One connection and a loop of random calls until `stop_at`."""

    def __init__(self, index, port, stop_at, figures, seed, context):
        super().__init__(name=f"soak-client-{index}", daemon=True)
        self.index = index
        self.rng = random.Random(seed)
        self.stop_at = stop_at
        self.figures = figures
        self.context = context
        # A connection of its own (no subchannel shared with the others):
        # request ids are scoped to it, so its Aborts find its requests.
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        self.stub = pb_grpc.InferenceStub(self.channel)
        self.raw_generate = self.channel.unary_unary(
            "/inferd.v1.Inference/Generate", request_serializer=identity, response_deserializer=identity)
        self.raw_stream = self.channel.unary_stream(
            "/inferd.v1.Inference/GenerateStream", request_serializer=identity, response_deserializer=identity)
        self.count = 0

    def run(self):
        try:
            while time.monotonic() < self.stop_at:
                roll = self.rng.random()
                if roll < 0.50:
                    self.stream_call()
                elif roll < 0.80:
                    self.unary_call()
                elif roll < 0.90:
                    self.bad_call()
                else:
                    self.small_call()
        except Exception as error:  # a client bug must fail the run, not end a thread quietly
            self.figures.fail(f"client {self.index}: {type(error).__name__}: {error}")
        finally:
            self.channel.close()

    def new_id(self):
        self.count += 1
        return f"soak-{self.index}-{self.count}"

    def good_request(self):
        rng = self.rng
        # Mixed lengths: mostly short prompts and outputs, some long ones;
        # prompt + output always fits the context.
        words = rng.choice((1, 3, 8, 20, 60, 120))
        max_tokens = rng.choice((1, 4, 16, 48, 96, 200))
        sampling = pb.SamplingParams(temperature=rng.choice((0.0, 0.7, 1.0)), top_k=rng.choice((0, 10)),
                                     seed=rng.randrange(1 << 32))
        stopping = pb.StoppingCriteria(max_tokens=max_tokens, ignore_eos=rng.random() < 0.5)
        if rng.random() < 0.2:
            stopping.stop.append(rng.choice(STOP_STRINGS))
        return pb.GenerateRequest(request_id=self.new_id(), text=prompt_text(rng, words), sampling=sampling,
                                  stopping=stopping, priority=rng.randint(-2, 2),
                                  logprobs=rng.choice((0, 0, 0, 2)))

    def check(self, kind, fate, status, allowed):
        self.figures.record(kind, fate, status)
        if status not in API_STATUSES:
            self.figures.fail(f"{kind} ({fate}) ended {status}, a status API.md does not list")
        elif status not in allowed:
            self.figures.fail(f"{kind} ({fate}) ended {status}; expected one of {sorted(allowed)}")

    def count_generate(self, may_be_unsent=False):
        with self.figures.lock:
            self.figures.generate_calls += 1
            if may_be_unsent:
                self.figures.unsent_possible += 1

    def stream_call(self):
        rng = self.rng
        request = self.good_request()
        fate = rng.choices(("complete", "cancel", "deadline", "abort"), weights=(5, 2, 2, 1))[0]
        timeout = rng.uniform(0.05, 2.0) if fate == "deadline" else inferd_testing.RPC_TIMEOUT_S
        after = rng.randint(0, 4)  # messages before a cancel or an abort
        self.count_generate(may_be_unsent=fate == "deadline" or (fate == "cancel" and after == 0))
        call = self.stub.GenerateStream(request, timeout=timeout)
        received = 0
        finished = False
        try:
            if fate == "cancel" and after == 0:
                call.cancel()
            for message in call:
                received += 1
                if message.finish_reason != pb.GenerateResponse.UNSPECIFIED:
                    finished = True
                if received == after and fate == "cancel":
                    call.cancel()
                elif received == after and fate == "abort":
                    found = self.stub.Abort(pb.AbortRequest(request_id=request.request_id),
                                            timeout=inferd_testing.RPC_TIMEOUT_S).found
                    with self.figures.lock:
                        if found:
                            self.figures.aborts_found += 1
                        else:
                            self.figures.aborts_missed += 1
            status = "OK"
        except grpc.RpcError as error:
            status = error.code().name
        # Any call may meet its deadline: a low priority one waits while
        # higher ones keep coming, and a busy machine is slow.
        allowed = {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}
        if fate == "cancel":
            allowed |= {"CANCELLED"}  # or it ended before the cancel
        elif fate == "abort":
            allowed |= {"CANCELLED"}
        if status == "OK" and not finished:
            self.figures.fail(f"stream {request.request_id} ended OK without a finish_reason")
        self.check("stream", fate, status, allowed)

    def unary_call(self):
        rng = self.rng
        request = self.good_request()
        fate = rng.choices(("complete", "cancel", "deadline"), weights=(6, 2, 2))[0]
        timeout = rng.uniform(0.05, 2.0) if fate == "deadline" else inferd_testing.RPC_TIMEOUT_S
        self.count_generate(may_be_unsent=fate != "complete")
        future = self.stub.Generate.future(request, timeout=timeout)
        if fate == "cancel":
            time.sleep(rng.uniform(0, 0.3))
            future.cancel()
        try:
            response = future.result()
            status = "OK"
            if response.finish_reason == pb.GenerateResponse.UNSPECIFIED:
                self.figures.fail(f"Generate {request.request_id} answered without a finish_reason")
        except grpc.FutureCancelledError:
            status = "CANCELLED"
        except grpc.RpcError as error:
            status = error.code().name
        allowed = {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}
        if fate == "cancel":
            allowed |= {"CANCELLED"}
        self.check("unary", fate, status, allowed)

    def bad_call(self):
        rng = self.rng
        kind = rng.choice(("temperature", "top_p", "max_tokens", "empty", "vocab", "model", "too_long",
                           "request_id", "not_a_message", "not_utf8"))
        text_field, stopping_field, max_tokens_field = 3, 7, 1
        if kind == "not_a_message":
            wire = b"\xff\xff\xff\xff"
        elif kind == "not_utf8":
            wire = length_delimited(text_field, b"Hi \xff\xfe") + length_delimited(
                stopping_field, varint_field(max_tokens_field, 2))
        else:
            request = pb.GenerateRequest(text="Once upon a time", stopping=pb.StoppingCriteria(max_tokens=4))
            if kind == "temperature":
                request.sampling.temperature = -1.0
            elif kind == "top_p":
                request.sampling.top_p = 2.0
            elif kind == "max_tokens":
                request.stopping.max_tokens = 0
            elif kind == "empty":
                request.ClearField("text")
            elif kind == "vocab":
                request.token_ids.ids.extend([1, 1 << 30])
            elif kind == "model":
                request.model = "no-such-model"
            elif kind == "too_long":
                request.stopping.max_tokens = self.context + 1
            elif kind == "request_id":
                request.request_id = "x" * 300
            wire = request.SerializeToString()
        self.count_generate()
        try:
            if rng.random() < 0.5:
                self.raw_generate(wire, timeout=inferd_testing.RPC_TIMEOUT_S)
            else:
                list(self.raw_stream(wire, timeout=inferd_testing.RPC_TIMEOUT_S))
            status = "OK"
        except grpc.RpcError as error:
            status = error.code().name
        self.check("bad", kind, status, {"INVALID_ARGUMENT"})

    def small_call(self):
        rng = self.rng
        kind = rng.choice(("tokenize", "detokenize", "model_info", "abort_unknown"))
        try:
            if kind == "tokenize":
                ids = self.stub.Tokenize(pb.TokenizeRequest(text=prompt_text(rng, 10)),
                                         timeout=inferd_testing.RPC_TIMEOUT_S).token_ids
                self.stub.Detokenize(pb.DetokenizeRequest(token_ids=ids), timeout=inferd_testing.RPC_TIMEOUT_S)
            elif kind == "detokenize":
                self.stub.Detokenize(pb.DetokenizeRequest(token_ids=[rng.randrange(3, 300) for _ in range(8)]),
                                     timeout=inferd_testing.RPC_TIMEOUT_S)
            elif kind == "model_info":
                self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=inferd_testing.RPC_TIMEOUT_S)
            else:
                found = self.stub.Abort(pb.AbortRequest(request_id=f"soak-unknown-{self.index}"),
                                        timeout=inferd_testing.RPC_TIMEOUT_S).found
                if found:
                    self.figures.fail("Abort of an id never used answered found=true")
            status = "OK"
        except grpc.RpcError as error:
            status = error.code().name
        self.check("small", kind, status, {"OK"})


def rss_kb(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def main():
    seed = ARGS.seed if ARGS.seed is not None else random.randrange(1 << 31)
    warmup = ARGS.warmup if ARGS.warmup is not None else min(60.0, ARGS.duration / 4)
    print(f"soak: {ARGS.duration:.0f}s, {ARGS.clients} clients, seed {seed}, warm-up {warmup:.0f}s, "
          f"server {ARGS.binary} {ARGS.server_args}", flush=True)
    server = inferd_testing.InferdServer(*ARGS.server_args.split())
    failures = []
    try:
        server.wait_until_ready()
        info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=inferd_testing.RPC_TIMEOUT_S)
        pid = server.process.pid
        rss_start = rss_kb(pid)
        figures = Figures()
        start = time.monotonic()
        stop_at = start + ARGS.duration
        clients = [Client(i, server.port, stop_at, figures, seed + i, info.max_context_length)
                   for i in range(ARGS.clients)]
        for client in clients:
            client.start()

        rss_warm = None
        rss_peak = rss_start
        preemptions_seen = 0
        next_report = start + 30
        while any(client.is_alive() for client in clients):
            time.sleep(1)
            now = time.monotonic()
            rss = rss_kb(pid)
            rss_peak = max(rss_peak, rss)
            if rss_warm is None and now - start >= warmup:
                rss_warm = rss
            if now >= next_report:
                scrape = server.scrape()
                preemptions_seen = scrape.value("inferd_preemptions_total")
                with figures.lock:
                    done = sum(figures.by_status.values())
                print(f"  {now - start:5.0f}s: {done} calls, RSS {rss / 1024:.1f} MB, "
                      f"blocks used {scrape.value('inferd_kv_cache_blocks_used'):.0f}, "
                      f"running {scrape.value('inferd_requests_running'):.0f}, "
                      f"waiting {scrape.value('inferd_requests_waiting'):.0f}, "
                      f"preemptions {preemptions_seen:.0f}", flush=True)
                next_report = now + 30
            if now > stop_at + 2 * inferd_testing.RPC_TIMEOUT_S:
                failures.append("client threads still running two RPC timeouts after the end")
                break
        load_seconds = time.monotonic() - start
        if rss_warm is None:
            rss_warm = rss_kb(pid)

        # After the load: the engine ends cancelled requests at its next
        # step, so wait (briefly) for everything to be let go.
        def idle():
            scrape = server.scrape()
            values = {name: scrape.value(name) for name in
                      ("inferd_kv_cache_blocks_used", "inferd_requests_running", "inferd_requests_waiting")}
            return values if not any(values.values()) else None

        try:
            end_values = inferd_testing.wait_for("KV blocks, running and waiting back to 0", idle, timeout=30)
        except AssertionError as error:
            scrape = server.scrape()
            end_values = {name: scrape.value(name) for name in
                          ("inferd_kv_cache_blocks_used", "inferd_requests_running", "inferd_requests_waiting")}
            failures.append(f"{error}: {end_values}")
        rss_end = rss_kb(pid)
        scrape = server.scrape()
        server_statuses = {labels["status"]: value for name, labels, value in scrape.samples
                           if name == "inferd_requests_total" and value > 0}
        preemptions = scrape.value("inferd_preemptions_total")
        exit_status = server.stop()
        log = server.log()
    finally:
        server.kill()

    failures.extend(figures.failures)
    for status in server_statuses:
        if status not in SERVER_STATUSES:
            failures.append(f"the server counted {server_statuses[status]:.0f} requests as {status}")
    server_total = sum(server_statuses.values())
    low = figures.generate_calls - figures.unsent_possible
    if not low <= server_total <= figures.generate_calls:
        failures.append(f"the server counted {server_total:.0f} Generate calls; the clients made "
                        f"{figures.generate_calls}, of which {figures.unsent_possible} may not have reached it")
    growth_mb = (rss_end - rss_warm) / 1024
    if growth_mb >= ARGS.max_rss_growth_mb:
        failures.append(f"RSS grew {growth_mb:.1f} MB after warm-up (limit {ARGS.max_rss_growth_mb:.0f} MB)")
    if exit_status != 0:
        failures.append(f"the server exited {exit_status} after SIGTERM")
    reports = [line for line in log.splitlines() if SANITIZER_REPORT.search(line)]
    if reports:
        failures.append(f"sanitizer reports in the server log: {reports[:5]}")
    if preemptions == 0:
        failures.append("no sequence was preempted: the KV cache is not small enough for this load")

    total = sum(figures.by_status.values())
    print(f"\nsoak figures ({load_seconds:.0f}s of load, seed {seed}):")
    print(f"  calls: {total} ({figures.generate_calls} Generate/GenerateStream, "
          f"{total - figures.generate_calls} Tokenize/Detokenize/GetModelInfo/Abort)")
    for kind in ("stream", "unary", "bad", "small"):
        statuses = {status: n for (k, status), n in sorted(figures.by_status.items()) if k == kind}
        print(f"  {kind:7s} by status: {statuses}")
    print(f"  fates: {dict(sorted(figures.fates.items()))}")
    print(f"  cancels: {figures.fates['cancel']}, deadlines: {figures.fates['deadline']}, "
          f"aborts: {figures.fates['abort']} (found {figures.aborts_found}, finished first {figures.aborts_missed})")
    print(f"  server requests_total by status: { {k: int(v) for k, v in sorted(server_statuses.items())} }")
    print(f"  preemptions: {preemptions:.0f}")
    print(f"  RSS: start {rss_start / 1024:.1f} MB, after warm-up {rss_warm / 1024:.1f} MB, "
          f"peak {rss_peak / 1024:.1f} MB, end {rss_end / 1024:.1f} MB (growth after warm-up {growth_mb:+.1f} MB)")
    print(f"  at the end: KV blocks used {end_values['inferd_kv_cache_blocks_used']:.0f}, "
          f"running {end_values['inferd_requests_running']:.0f}, waiting {end_values['inferd_requests_waiting']:.0f}")
    print(f"  exit status after SIGTERM: {exit_status}; sanitizer reports: {len(reports)}")
    if failures:
        print("\nsoak: FAILED")
        for failure in failures:
            print(f"  - {failure}")
        print(f"server log: {server.log_path}")
        return 1
    server.remove_log()
    print("\nsoak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

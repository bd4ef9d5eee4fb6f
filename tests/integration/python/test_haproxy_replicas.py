"""Three replicas behind a real HAProxy (deploy/haproxy/haproxy.cfg), on loopback.

Three `inferd serve` processes and Debian's haproxy balancing gRPC over h2c,
health-checking each replica's GET /readyz. inferd-bench sends load through
the balancer (closed loop, concurrency 24, --retry-unavailable as a gRPC
retry policy would); mid-run one replica gets SIGTERM, drains, exits 0 and is
restarted on the same ports. Then:
  - no request is lost: every one ended OK, or UNAVAILABLE before any token
    and was retried (the bench reports no failure), and the replicas together
    finished exactly as many requests OK as the bench completed;
  - traffic reached all three replicas (their own metrics, and the drained
    one's log for its first life) and the restarted one took traffic again;
  - the drained replica admitted no request after SIGTERM: every request it
    finished arrived before the signal (request log: end time - total), and
    its /readyz answered 503 throughout the drain.
NoReplicaTest: with no replica up, the balancer answers gRPC UNAVAILABLE
(deploy/haproxy/haproxy.cfg's http-error lines) and the bench retries.

Environment (set by ctest): INFERD_BINARY, INFERD_BENCH_BINARY,
INFERD_SOURCE_DIR, PYTHONPATH (the generated stubs, for inferd_testing).
"""

import csv
import datetime
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from inferd_testing import SOURCE_DIR, INFERD_BINARY, Scrape, free_port, http_get, wait_for

BENCH_BINARY = os.environ.get("INFERD_BENCH_BINARY") or os.path.join(SOURCE_DIR, "build", "inferd-bench")
HAPROXY_CONFIG = os.path.join(SOURCE_DIR, "deploy", "haproxy", "haproxy.cfg")
MODEL = os.path.join(SOURCE_DIR, "models", "stories260K")

# Long enough that the restarted replica takes traffic again even on a
# loaded machine (the drain waits for streams that a busy balancer forwards
# slowly); the test ends in about LOAD_SECONDS + 5 s.
LOAD_SECONDS = 25
CONCURRENCY = 24
# Long enough outputs that a replica under load is rarely between requests:
# with 16 tokens a request took a few milliseconds on stories260K, and the
# replica could be idle the instant SIGTERM came.
OUTPUT_LEN = 128
# Longer than any drain here; a stream still running at the drain timeout
# would end UNAVAILABLE after tokens, which no client may retry.
DRAIN_TIMEOUT_S = 30
# The server logs the signal just before it stops admitting: a request may
# slip in within that instant.
SIGNAL_SLACK_S = 0.005

_LOG_TIME = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})"
_FINISHED_OK = re.compile(_LOG_TIME + r" \S+ request \S+ (?:length|eos|stop_string|stop_token): .* total=([0-9.]+)s")
_DRAINING = re.compile(_LOG_TIME + r" \S+ .* received: draining \(up to \S+ for (\d+) running requests\)")
_REFUSED_UNAVAILABLE = re.compile(r"request \S+ refused: UNAVAILABLE")


def log_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def http_status(url):
    """The HTTP status of GET `url` (errors included); OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class Replica:
    """One `inferd serve` on fixed ports (a restart reuses them), logging to a file."""

    def __init__(self, name, workdir):
        self.name = name
        self.port = free_port()
        self.metrics_port = free_port()
        self.workdir = workdir
        self.lives = 0
        self.process = None
        self.log_path = None

    def start(self):
        self.lives += 1
        self.log_path = os.path.join(self.workdir, f"{self.name}.{self.lives}.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [INFERD_BINARY, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--metrics-port", str(self.metrics_port), "--http-port", "-1", "--model", MODEL,
                 "--drain-timeout-seconds", str(DRAIN_TIMEOUT_S), "--kv-cache-memory-mb", "64"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self):
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                return http_status(f"http://127.0.0.1:{self.metrics_port}/readyz") == 200
            except OSError:
                return False
        wait_for(f"{self.name} /readyz 200", ready, timeout=60)

    def wait_ready_choosing_new_ports_if_taken(self, attempts=5):
        """wait_ready for a first start: ctest runs other tests meanwhile, and one
        of them may have bound a port between free_port() and this server's
        bind; then new ports and another start."""
        for attempt in range(attempts):
            try:
                self.wait_ready()
                return
            except AssertionError:
                log = self.log()
                taken = "Address already in use" in log or "the port is already in use" in log
                if attempt + 1 == attempts or not taken:
                    raise
            self.port, self.metrics_port = free_port(), free_port()
            self.start()

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def scrape(self):
        return Scrape(http_get(f"http://127.0.0.1:{self.metrics_port}/metrics"))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=DRAIN_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class HaproxyReplicasTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        for path, what in ((INFERD_BINARY, "INFERD_BINARY"), (BENCH_BINARY, "INFERD_BENCH_BINARY")):
            if not os.access(path, os.X_OK):
                raise AssertionError(f"no executable at {path} (set {what}; `make build`)")
        cls.haproxy_binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(cls.haproxy_binary, os.X_OK):
            raise AssertionError("haproxy is not installed: run `make deps` (Debian package haproxy)")
        cls.workdir = tempfile.mkdtemp(prefix="inferd-haproxy-test-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.replicas = [Replica(f"replica{i}", cls.workdir) for i in (1, 2, 3)]
        for replica in cls.replicas:
            cls.addClassCleanup(replica.kill)
            replica.start()
        for replica in cls.replicas:
            replica.wait_ready_choosing_new_ports_if_taken()

        cls.lb_port = free_port()
        cls.stats_port = free_port()
        env = dict(os.environ, INFERD_LB_BIND=f"127.0.0.1:{cls.lb_port}",
                   INFERD_LB_STATS=f"127.0.0.1:{cls.stats_port}")
        for i, replica in enumerate(cls.replicas, start=1):
            env[f"INFERD_REPLICA_{i}"] = f"127.0.0.1:{replica.port}"
            env[f"INFERD_REPLICA_{i}_METRICS"] = str(replica.metrics_port)
        cls.haproxy_log = open(os.path.join(cls.workdir, "haproxy.log"), "wb")
        cls.addClassCleanup(cls.haproxy_log.close)
        cls.haproxy = subprocess.Popen([cls.haproxy_binary, "-db", "-f", HAPROXY_CONFIG], env=env,
                                       stdin=subprocess.DEVNULL, stdout=cls.haproxy_log, stderr=subprocess.STDOUT)
        cls.addClassCleanup(cls.stop_haproxy)
        wait_for("haproxy to see 3 replicas UP", lambda: cls.servers_up() == 3, timeout=30)
        cls.run_scenario()

    @classmethod
    def stop_haproxy(cls):
        if cls.haproxy.poll() is None:
            cls.haproxy.terminate()
            cls.haproxy.wait(timeout=10)

    @classmethod
    def stats(cls):
        """HAProxy's stats CSV: {server name: row} for the inferd backend."""
        try:
            text = http_get(f"http://127.0.0.1:{cls.stats_port}/stats;csv")
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "inferd"}

    @classmethod
    def servers_up(cls):
        return sum(1 for name, row in cls.stats().items() if name.startswith("replica") and row["status"] == "UP")

    @classmethod
    def run_scenario(cls):
        drained = cls.replicas[1]
        cls.bench_json = os.path.join(cls.workdir, "bench.json")
        cls.bench_log_path = os.path.join(cls.workdir, "bench.log")
        started = time.monotonic()
        with open(cls.bench_log_path, "wb") as bench_log:
            bench = subprocess.Popen(
                [BENCH_BINARY, "--target", f"127.0.0.1:{cls.lb_port}", "--concurrency", str(CONCURRENCY),
                 "--duration", str(LOAD_SECONDS), "--input-len", "16", "--output-len", str(OUTPUT_LEN), "--seed", "7",
                 "--retry-unavailable", "8", "--ready-timeout", "20", "--output-json", cls.bench_json],
                stdin=subprocess.DEVNULL, stdout=bench_log, stderr=subprocess.STDOUT)
            try:
                # Mid-run: once the load is up and this replica is busy.
                wait_for("load on the replica to drain", lambda: time.monotonic() - started > 2 and
                         drained.scrape().value("inferd_requests_running") > 0, timeout=30)
                drained.process.send_signal(signal.SIGTERM)
                # While it drains, /readyz answers 503 (what HAProxy checks).
                cls.readyz_while_draining = []
                drain_deadline = time.monotonic() + DRAIN_TIMEOUT_S + 10
                while drained.process.poll() is None and time.monotonic() < drain_deadline:
                    try:
                        cls.readyz_while_draining.append(
                            http_status(f"http://127.0.0.1:{drained.metrics_port}/readyz"))
                    except OSError:
                        pass  # the metrics port closes just before exit
                    time.sleep(0.01)
                cls.drain_exit = drained.process.wait(timeout=10)
                cls.first_life_log = drained.log()
                cls.restart_at = time.monotonic() - started
                drained.start()
                drained.wait_ready()
                cls.bench_exit = bench.wait(timeout=LOAD_SECONDS + 60)
            finally:
                if bench.poll() is None:
                    bench.kill()
                    bench.wait()
        with open(cls.bench_log_path, encoding="utf-8", errors="replace") as f:
            cls.bench_output = f.read()
        with open(cls.bench_json, encoding="utf-8") as f:
            cls.report = json.load(f)
        cls.final_scrapes = [replica.scrape() for replica in cls.replicas]
        served = [int(s.value("inferd_requests_total", status="ok")) for s in cls.final_scrapes]
        print(f"\nbench: {cls.report['completed']} completed, {cls.report['failed']} failed, "
              f"{cls.report['retried_requests']} retried ({cls.report['retries']} retries) in "
              f"{cls.report['duration_s']:.1f} s; served OK by replica1..3 {served}, by replica2 before SIGTERM "
              f"{len(_FINISHED_OK.findall(cls.first_life_log))}; restarted at {cls.restart_at:.1f} s",
              file=sys.stderr)

    def test_the_drained_replica_exited_0(self):
        self.assertEqual(self.drain_exit, 0, self.first_life_log)

    def test_readyz_said_503_while_draining(self):
        # The signal is asynchronous: a poll or two may come before the
        # server saw it; from the first 503 on, nothing else.
        statuses = self.readyz_while_draining
        self.assertIn(503, statuses)
        self.assertEqual(set(statuses[statuses.index(503):]), {503}, statuses)

    def test_no_request_is_lost(self):
        report = self.report
        self.assertEqual(self.bench_exit, 0, self.bench_output)
        self.assertEqual(report["failed"], 0, self.bench_output)
        self.assertEqual(report["errors"], {}, self.bench_output)
        self.assertGreaterEqual(report["completed"], 30, self.bench_output)
        # Every OK the bench saw was one request finished OK by one replica:
        # none lost, none served twice.
        ok_by_replicas = sum(s.value("inferd_requests_total", status="ok") for s in self.final_scrapes)
        ok_by_replicas += len(_FINISHED_OK.findall(self.first_life_log))
        self.assertEqual(ok_by_replicas, report["completed"], self.bench_output)

    def test_unavailable_refusals_were_retried(self):
        # Each UNAVAILABLE a replica sent (draining) came back to the bench,
        # which retried it; the balancer's own 503s are retried too.
        refused = len(_REFUSED_UNAVAILABLE.findall(self.first_life_log))
        refused += sum(s.value("inferd_requests_total", status="unavailable") for s in self.final_scrapes)
        self.assertGreaterEqual(self.report["retries"], refused, self.bench_output)

    def test_traffic_reached_all_three_replicas(self):
        served = {replica.name: scrape.value("inferd_requests_total", status="ok")
                  for replica, scrape in zip(self.replicas, self.final_scrapes)}
        served["replica2 before SIGTERM"] = len(_FINISHED_OK.findall(self.first_life_log))
        for name, count in served.items():
            self.assertGreater(count, 0, f"{name} served nothing: {served}")
        # HAProxy's view agrees: every server took sessions.
        for name, row in self.stats().items():
            if name.startswith("replica"):
                self.assertGreater(int(row["stot"]), 0, f"{name}: {row}")

    def test_the_drained_replica_admitted_nothing_after_sigterm(self):
        log = self.first_life_log
        draining = _DRAINING.search(log)
        self.assertIsNotNone(draining, log)
        self.assertGreater(int(draining.group(2)), 0, "SIGTERM came while the replica was idle: not mid-run")
        signalled = log_time(draining.group(1))
        finished = _FINISHED_OK.findall(log)
        self.assertGreater(len(finished), 0)
        late = [(end, total) for end, total in finished if log_time(end) - float(total) > signalled + SIGNAL_SLACK_S]
        self.assertEqual(late, [], "requests that arrived after SIGTERM were served")
        self.assertIn("drained; exiting", log)


def start_haproxy(env_overrides, log_path):
    env = dict(os.environ, **env_overrides)
    log = open(log_path, "wb")
    process = subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", HAPROXY_CONFIG],
                               env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return process, log


class NoReplicaTest(unittest.TestCase):
    """With every replica down the balancer answers UNAVAILABLE as gRPC does
    (not an HTML page, on which gRPC clients hung), and the bench retries."""

    def test_every_request_fails_unavailable_promptly_and_is_retried(self):
        workdir = tempfile.mkdtemp(prefix="inferd-haproxy-none-")
        self.addCleanup(shutil.rmtree, workdir, True)
        lb_port = free_port()
        env = {"INFERD_LB_BIND": f"127.0.0.1:{lb_port}", "INFERD_LB_STATS": f"127.0.0.1:{free_port()}"}
        for i in (1, 2, 3):  # nothing listens on these
            env[f"INFERD_REPLICA_{i}"] = f"127.0.0.1:{free_port()}"
            env[f"INFERD_REPLICA_{i}_METRICS"] = str(free_port())
        haproxy, log = start_haproxy(env, os.path.join(workdir, "haproxy.log"))
        self.addCleanup(log.close)
        self.addCleanup(lambda: (haproxy.terminate(), haproxy.wait(timeout=10)))
        report_path = os.path.join(workdir, "bench.json")
        run = subprocess.run([BENCH_BINARY, "--target", f"127.0.0.1:{lb_port}", "--concurrency", "4",
                              "--num-requests", "20", "--retry-unavailable", "2", "--output-json", report_path],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(run.returncode, 1, run.stdout + run.stderr)  # 1: requests failed
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        self.assertEqual(report["errors"], {"UNAVAILABLE": 20})
        self.assertEqual(report["retried_requests"], 20)
        self.assertEqual(report["retries"], 40)
        self.assertNotIn("Error parsing metadata", run.stderr)


if __name__ == "__main__":
    unittest.main()

"""The Prometheus side of inferd, against the real server and a real Prometheus.

What is checked:
  - a scrape of /metrics passes `promtool check metrics`;
  - deploy/prometheus/{alerts,prometheus}.yml pass `promtool check rules/config`;
  - every PromQL expression of deploy/grafana/inferd-dashboard.json and of the
    alert rules names only metric families the server exports, and every panel
    and alert we promise is there;
  - a real Prometheus scraping the server sees the same counts as the clients,
    loads the rules and evaluates them (and the dashboard's queries) cleanly;
  - exact per-status, token and histogram counts from /metrics deltas.

The server fixture (InferdServer, ServerTestCase) and the helpers (Scrape,
wait_for, ...) are in inferd_testing.py, beside this file.

Environment (set by ctest, see the end of tests/CMakeLists.txt):
  INFERD_BINARY      the server binary
  INFERD_SOURCE_DIR  the repository (for deploy/)
  PYTHONPATH         the stubs generated from proto/ (inferd.v1, google.rpc)

Run by hand from this folder (Debian's interpreter: it has grpc):
  INFERD_BINARY=BUILD/inferd PYTHONPATH=BUILD/python \
      /usr/bin/python3 -m unittest -v test_metrics
"""

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest
import urllib.error
import urllib.parse

import grpc

# The shared fixture first: it says how to get the generated stubs if they
# are missing.
from inferd_testing import RPC_TIMEOUT_S, SOURCE_DIR, Scrape, ServerTestCase, free_port, http_get, wait_for
from inferd.v1 import inference_pb2 as pb

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS_CONFIG = os.path.join(SOURCE_DIR, "deploy", "prometheus", "prometheus.yml")
ALERTS = os.path.join(SOURCE_DIR, "deploy", "prometheus", "alerts.yml")
DASHBOARD = os.path.join(SOURCE_DIR, "deploy", "grafana", "inferd-dashboard.json")

CONTEXT = 512  # stories260K, the bundled model
JOB = "inferd"
STATUSES = ("ok", "invalid_argument", "resource_exhausted", "cancelled", "deadline_exceeded", "unavailable",
            "internal")
# The histograms API.md says count each admitted request once, when it ends.
PER_REQUEST_HISTOGRAMS = ("inferd_request_duration_seconds", "inferd_request_queue_seconds",
                          "inferd_request_prompt_tokens", "inferd_request_generation_tokens")
# A metric name as the dashboard and the rules write it.
METRIC_NAME = re.compile(r"\b(?:inferd|grpc_server)_[a-zA-Z0-9_]+")


# --- requests -------------------------------------------------------------

def request(text, max_tokens, ignore_eos=False, seed=1):
    return pb.GenerateRequest(
        text=text, sampling=pb.SamplingParams(temperature=0.8, seed=seed),
        stopping=pb.StoppingCriteria(max_tokens=max_tokens, ignore_eos=ignore_eos))


def long_request(stub, text):
    """A request that runs to the end of the context (the slowest the bundled
    model gets), and its prompt length from Tokenize."""
    prompt_tokens = len(stub.Tokenize(pb.TokenizeRequest(text=text), timeout=RPC_TIMEOUT_S).token_ids)
    return request(text, CONTEXT - prompt_tokens, ignore_eos=True), prompt_tokens


# Assertions outside a test method (setUpClass runs the traffic once per class).
check = unittest.TestCase()


class Completed:
    """What the clients of finished (OK) requests received; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0
        self.tokens = 0
        self.prompt_tokens = 0

    def add(self, token_ids, usage):
        check.assertEqual(usage.completion_tokens, len(token_ids), "usage.completion_tokens = the tokens received")
        with self._lock:
            self.count += 1
            self.tokens += len(token_ids)
            self.prompt_tokens += usage.prompt_tokens


def run_unary(stub, completed, req):
    response = stub.Generate(req, timeout=RPC_TIMEOUT_S)
    completed.add(response.token_ids, response.usage)


def run_stream(stub, completed, req):
    messages = list(stub.GenerateStream(req, timeout=RPC_TIMEOUT_S))
    completed.add([t for m in messages for t in m.token_ids], messages[-1].usage)


def assert_refused(stub, req, code):
    with check.assertRaises(grpc.RpcError) as caught:
        stub.Generate(req, timeout=RPC_TIMEOUT_S)
    check.assertEqual(caught.exception.code(), code, caught.exception.details())


def start_and_cancel_stream(stub, req):
    """Reads the first message of a stream, then cancels it (.cancel(), as a
    client that goes away). Returns the tokens the client read."""
    call = stub.GenerateStream(req, timeout=RPC_TIMEOUT_S)
    first = next(call)
    check.assertFalse(call.done(), "the stream ended before it was cancelled; make it longer")
    call.cancel()
    with check.assertRaises(grpc.RpcError) as caught:
        for _ in call:
            pass
    check.assertEqual(caught.exception.code(), grpc.StatusCode.CANCELLED)
    return len(first.token_ids)


def assert_settled(scrape_fn, before, calls):
    """Waits until the server counted `calls` more Generate/GenerateStream
    calls than in `before` and the engine is idle; returns that scrape. The
    server ends a cancelled request on its engine thread, after the client
    has moved on."""
    def settled():
        now = scrape_fn()
        counted = now.value("inferd_requests_total") - before.value("inferd_requests_total")
        idle = (now.value("inferd_requests_running") == 0 and now.value("inferd_requests_waiting") == 0
                and now.value("inferd_kv_cache_blocks_used") == 0)
        return now if counted >= calls and idle else None
    after = wait_for(f"{calls} calls counted in inferd_requests_total and an idle engine", settled)
    check.assertEqual(after.value("inferd_requests_total") - before.value("inferd_requests_total"), calls,
                     "every Generate/GenerateStream call counted once")
    return after


# --- the deploy files -------------------------------------------------------

def dashboard_exprs():
    """(panel title, expr) for every target of every panel, rows included."""
    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    out = []

    def walk(panels):
        for panel in panels or []:
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    out.append((panel.get("title", ""), target["expr"]))
            walk(panel.get("panels"))

    walk(dashboard.get("panels"))
    return out


def grafana_to_promql(expr):
    """A dashboard expression as Grafana sends it, variables replaced (all
    instances, a 1m rate window)."""
    return (expr.replace("$__rate_interval", "1m").replace("${instance}", ".*").replace("$instance", ".*"))


def _quantiles_of(metric):
    def has(exprs):
        found = {q for e in exprs if f"rate({metric}_bucket" in e
                 for q in re.findall(r"histogram_quantile\(\s*([0-9.]+)", e)}
        return {"0.5", "0.99"} <= found
    return has


def _one_expr_with(*needles):
    return lambda exprs: any(all(n in e for n in needles) for e in exprs)


# The panels the dashboard promises, each as a test over its expressions.
REQUIRED_PANELS = [
    ("time to first token p50 and p99", _quantiles_of("inferd_time_to_first_token_seconds")),
    ("inter-token latency p50 and p99", _quantiles_of("inferd_inter_token_latency_seconds")),
    ("end-to-end request duration p50 and p99", _quantiles_of("inferd_request_duration_seconds")),
    ("output tokens/s", _one_expr_with("rate(inferd_generation_tokens_total")),
    ("requests/s by status", _one_expr_with("rate(inferd_requests_total", "status")),
    ("requests running", _one_expr_with("inferd_requests_running")),
    ("requests waiting", _one_expr_with("inferd_requests_waiting")),
    ("KV cache usage", _one_expr_with("inferd_kv_cache_usage_ratio")),
    ("prefix cache hit rate", _one_expr_with("rate(inferd_prefix_cache_hit_tokens_total", "/",
                                             "rate(inferd_prefix_cache_queried_tokens_total")),
    ("preemptions/s", _one_expr_with("rate(inferd_preemptions_total")),
    ("step time p50 and p99", _quantiles_of("inferd_step_duration_seconds")),
    ("gRPC handled rate by code", _one_expr_with("rate(grpc_server_handled_total", "grpc_code")),
]

# The alerts we promise: name -> what its expression (whitespace folded) holds.
REQUIRED_ALERTS = {
    "InferdDown": ('up{job="inferd"} == 0',),
    "InferdHighTimeToFirstToken": ("histogram_quantile(0.95", "rate(inferd_time_to_first_token_seconds_bucket"),
    "InferdWaitingQueueGrowing": ("inferd_requests_waiting[", "inferd_requests_waiting > 0"),
    "InferdKvCacheAlmostFull": ("inferd_kv_cache_usage_ratio > 0.9",),
    "InferdHighErrorRatio": ('inferd_requests_total{status!="ok"}', "/"),
    "InferdNoProgress": ("inferd_requests_running", "inferd_requests_waiting",
                         "rate(inferd_step_duration_seconds_count[2m]) == 0"),
}
REQUIRED_FOR = {"InferdHighTimeToFirstToken": "5m", "InferdWaitingQueueGrowing": "10m",
                "InferdKvCacheAlmostFull": "5m"}


def assert_only_exported(test, scrape, where, expr, allowed=()):
    """Every metric name in `expr` is a family of `scrape` (a histogram's
    _bucket/_sum/_count series by its family)."""
    names = set(METRIC_NAME.findall(expr))
    test.assertTrue(names or allowed, f"{where}: names no inferd metric: {expr!r}")
    for name in names:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        exported = name in scrape.types or (base != name and scrape.types.get(base) in ("histogram", "summary"))
        test.assertTrue(exported, f"{where}: {name} is not a metric family the server exports ({expr!r})")


# --- 1 and 3: a scrape after traffic ------------------------------------------

class ScrapeTest(ServerTestCase):
    """A real scrape after some traffic (so the histograms have data): clean
    for promtool, and it has every family the dashboard queries."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        completed = Completed()
        run_unary(cls.stub, completed, request("Once upon a time", 12))
        run_stream(cls.stub, completed, request("Lily and Ben", 12))
        assert_refused(cls.stub, pb.GenerateRequest(text=""), grpc.StatusCode.INVALID_ARGUMENT)
        cls.scrape = assert_settled(cls.server.scrape, Scrape(""), 3)

    def test_promtool_check_metrics_is_silent(self):
        text = http_get(self.server.metrics_url())
        self.assertIn("inferd_time_to_first_token_seconds_bucket", text)
        self.assertIn('grpc_server_handled_total{grpc_code="InvalidArgument"', text)
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
        output = lint.stdout.decode() + lint.stderr.decode()
        self.assertEqual(lint.returncode, 0, output)
        self.assertEqual(output, "", "promtool check metrics: no findings")

    def test_every_api_md_family_is_exported_with_its_type(self):
        expected = {
            "inferd_requests_total": "counter", "inferd_request_finished_total": "counter",
            "inferd_requests_running": "gauge", "inferd_requests_waiting": "gauge",
            "inferd_preemptions_total": "counter", "inferd_prompt_tokens_total": "counter",
            "inferd_generation_tokens_total": "counter", "inferd_prefix_cache_queried_tokens_total": "counter",
            "inferd_prefix_cache_hit_tokens_total": "counter", "inferd_kv_cache_blocks": "gauge",
            "inferd_kv_cache_blocks_used": "gauge", "inferd_kv_cache_usage_ratio": "gauge",
            "inferd_time_to_first_token_seconds": "histogram", "inferd_inter_token_latency_seconds": "histogram",
            "inferd_request_duration_seconds": "histogram", "inferd_request_queue_seconds": "histogram",
            "inferd_request_prompt_tokens": "histogram", "inferd_request_generation_tokens": "histogram",
            "inferd_step_duration_seconds": "histogram", "inferd_step_batch_tokens": "histogram",
            "inferd_decode_step_duration_seconds": "histogram",
            "inferd_step_batch_sequences": "histogram", "inferd_model_info": "gauge",
            "inferd_cache_config_info": "gauge", "grpc_server_handled_total": "counter",
        }
        for name, kind in expected.items():
            with self.subTest(name):
                self.assertEqual(self.scrape.types.get(name), kind)
        for status in STATUSES:  # every label value from the start, so rates exist before the first error
            with self.subTest(status=status):
                self.assertTrue(any(n == "inferd_requests_total" and labels.get("status") == status
                                    for n, labels, _ in self.scrape.samples))

    def test_cache_config_info_names_the_cache_dtype(self):
        # float32 weights: --kv-cache-dtype auto holds the cache in float32.
        self.assertEqual(self.scrape.value("inferd_cache_config_info", cache_dtype="float32", block_size="16"), 1)

    def test_dashboard_queries_only_exported_metrics(self):
        exprs = dashboard_exprs()
        self.assertTrue(exprs, "the dashboard has no queries")
        for title, expr in exprs:
            with self.subTest(panel=title, expr=expr):
                assert_only_exported(self, self.scrape, f"panel {title!r}", expr)
        for what, has in REQUIRED_PANELS:
            with self.subTest(required=what):
                self.assertTrue(has([e for _, e in exprs]), f"the dashboard has no query for {what}")


# --- 2: the deploy files, statically ----------------------------------------

class PromtoolTest(unittest.TestCase):

    def promtool_check(self, *args):
        run = subprocess.run([PROMTOOL, "check", *args], capture_output=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stdout.decode() + run.stderr.decode())
        return run.stdout.decode()

    def test_alert_rules(self):
        self.assertIn(f"SUCCESS: {len(REQUIRED_ALERTS)} rules found", self.promtool_check("rules", ALERTS))

    def test_scrape_config_and_its_rule_files(self):
        # promtool resolves rule_files relative to the config file, and checks them.
        self.assertIn("SUCCESS: 1 rule files found", self.promtool_check("config", PROMETHEUS_CONFIG))
        with open(PROMETHEUS_CONFIG, encoding="utf-8") as f:
            config = f.read()
        self.assertRegex(config, rf"job_name:\s*{JOB}\n")
        self.assertRegex(config, r"scrape_interval:\s*15s")
        self.assertIn("localhost:9400", config)


# --- 4 (and 3 for the alerts): a real Prometheus ---------------------------------

class PrometheusTest(ServerTestCase):
    """Prometheus scrapes the server every second and evaluates the alert
    rules every second; what it stores equals what the clients saw."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(PROMETHEUS, os.X_OK):
            raise unittest.SkipTest(f"no {PROMETHEUS} (Debian package prometheus)")
        cls.prometheus_dir = tempfile.mkdtemp(prefix="inferd-prometheus-test-")
        cls.addClassCleanup(shutil.rmtree, cls.prometheus_dir, ignore_errors=True)
        config = os.path.join(cls.prometheus_dir, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {json.dumps(ALERTS)}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["127.0.0.1:{cls.server.metrics_port}"]
""")
        cls.prometheus_url = f"http://127.0.0.1:{free_port()}"
        log_path = os.path.join(cls.prometheus_dir, "prometheus.log")
        with open(log_path, "wb") as log:
            cls.prometheus = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={cls.prometheus_dir}/data",
                 f"--web.listen-address={cls.prometheus_url[len('http://'):]}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        cls.addClassCleanup(cls.stop_prometheus)

        def ready():
            if cls.prometheus.poll() is not None:
                with open(log_path, encoding="utf-8", errors="replace") as f:
                    raise AssertionError(f"prometheus exited with {cls.prometheus.returncode}:\n{f.read()[-4000:]}")
            try:
                http_get(f"{cls.prometheus_url}/-/ready", timeout=2)
                return True
            except OSError:  # not listening yet, or 503 while it starts
                return False

        wait_for("Prometheus /-/ready", ready, timeout=30, interval=0.1)

    @classmethod
    def stop_prometheus(cls):
        if cls.prometheus.poll() is None:
            cls.prometheus.send_signal(signal.SIGTERM)
            try:
                cls.prometheus.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.prometheus.kill()
                cls.prometheus.wait()

    @classmethod
    def tearDownClass(cls):
        cls.stop_prometheus()
        super().tearDownClass()

    def api(self, path, **params):
        url = f"{self.prometheus_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            body = json.loads(http_get(url))
        except urllib.error.HTTPError as error:  # a bad query: 400 with the error in the body
            body = json.loads(error.read().decode())
        self.assertEqual(body.get("status"), "success", f"{url}: {body}")
        return body["data"]

    def query(self, promql):
        """An instant query's only value (None if the result is empty)."""
        result = self.api("query", query=promql)["result"]
        self.assertLessEqual(len(result), 1, f"{promql}: {result}")
        return float(result[0]["value"][1]) if result else None

    def wait_until_scraped(self, names):
        """Until Prometheus holds the server's current value of each of
        `names` (an idle server: they no longer change)."""
        server = self.server.scrape()
        want = {name: server.value(name) for name in names}
        wait_for(f"Prometheus to scrape {want}",
                 lambda: all(self.query(f'sum({n}{{job="{JOB}"}})') == v for n, v in want.items()),
                 timeout=20, interval=0.2)

    def test_prometheus_sees_what_the_clients_saw(self):
        completed = Completed()
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(run_unary, self.stub, completed, request(text, n, seed=i))
                       for i, (text, n) in enumerate([("Once upon a time", 20), ("The cat", 35), ("Tom", 8)])]
            futures += [pool.submit(run_stream, self.stub, completed, request(text, n, seed=i))
                        for i, (text, n) in enumerate([("Lily", 25), ("A big dog", 40), ("Sue", 5)])]
            for future in futures:
                future.result()
        self.assertEqual(completed.count, 6)
        assert_settled(self.server.scrape, Scrape(""), 6)

        # Completed requests only: exactly what the clients received.
        self.wait_until_scraped(["inferd_generation_tokens_total", "inferd_requests_total"])
        self.assertEqual(self.query(f'inferd_generation_tokens_total{{job="{JOB}"}}'), completed.tokens)
        self.assertEqual(self.query(f'inferd_prompt_tokens_total{{job="{JOB}"}}'), completed.prompt_tokens)

        # Then one invalid request and one cancelled stream. The engine runs
        # ahead of the client and stops at its next step after the cancel, so
        # it may have generated tokens of that stream the client never read:
        # from here on the token count has bounds, not one value.
        assert_refused(self.stub, pb.GenerateRequest(text="Lily", sampling=pb.SamplingParams(top_p=2.0)),
                       grpc.StatusCode.INVALID_ARGUMENT)
        cancelled_req, _ = long_request(self.stub, "Once upon a time")
        read = start_and_cancel_stream(self.stub, cancelled_req)
        assert_settled(self.server.scrape, Scrape(""), 8)
        self.wait_until_scraped(["inferd_generation_tokens_total", "inferd_requests_total",
                                 "inferd_request_duration_seconds_count", "inferd_kv_cache_blocks_used"])

        generated = self.query(f'inferd_generation_tokens_total{{job="{JOB}"}}')
        self.assertGreaterEqual(generated, completed.tokens + read)
        self.assertLessEqual(generated, completed.tokens + cancelled_req.stopping.max_tokens)
        self.assertEqual(generated, self.query(f'inferd_request_generation_tokens_sum{{job="{JOB}"}}'),
                         "the token counter agrees with the per-request histogram")
        expected = {"ok": 6, "invalid_argument": 1, "cancelled": 1}
        for status in STATUSES:
            with self.subTest(status=status):
                self.assertEqual(self.query(f'inferd_requests_total{{job="{JOB}",protocol="grpc",status="{status}"}}'),
                                 expected.get(status, 0))
        self.assertEqual(self.query(f'inferd_request_duration_seconds_count{{job="{JOB}"}}'), 7,
                         "admitted requests: the 6 completed and the cancelled one")
        self.assertEqual(self.query(f'inferd_kv_cache_blocks_used{{job="{JOB}"}}'), 0, "idle")
        self.assertEqual(self.query(f'up{{job="{JOB}"}}'), 1)

        # Every dashboard query runs, and finds series now that there was traffic.
        for title, expr in dashboard_exprs():
            with self.subTest(panel=title, expr=expr):
                self.assertTrue(self.api("query", query=grafana_to_promql(expr))["result"], "no series")

    def test_alert_rules_loaded_and_evaluated(self):
        def evaluated():
            groups = self.api("rules")["groups"]
            rules = [rule for group in groups if group["name"] == "inferd" for rule in group["rules"]]
            return rules if rules and all(rule["health"] != "unknown" for rule in rules) else None
        rules = wait_for("the inferd alert group evaluated", evaluated, timeout=20, interval=0.2)
        self.assertEqual(sorted(rule["name"] for rule in rules), sorted(REQUIRED_ALERTS))
        scrape = self.server.scrape()
        for rule in rules:
            name = rule["name"]
            with self.subTest(alert=name):
                self.assertEqual(rule["type"], "alerting")
                self.assertEqual(rule["health"], "ok", rule.get("lastError"))
                expr = " ".join(rule["query"].split())
                allowed = ("up",) if name == "InferdDown" else ()
                assert_only_exported(self, scrape, f"alert {name}", expr, allowed)
                for needle in REQUIRED_ALERTS[name]:
                    self.assertIn(needle, expr)
                if name in REQUIRED_FOR:
                    self.assertEqual(rule["duration"], {"5m": 300, "10m": 600}[REQUIRED_FOR[name]], "for:")
                self.assertIn(rule["labels"].get("severity"), ("critical", "warning", "info"))
                self.assertTrue(rule["annotations"].get("summary"), "annotations.summary")
                self.assertTrue(rule["annotations"].get("description"), "annotations.description")
        # The server is up: InferdDown is neither pending nor firing.
        self.assertNotIn("InferdDown", {alert["labels"]["alertname"] for alert in self.api("alerts")["alerts"]})


# --- 5: exact counts from /metrics ------------------------------------------

class ExactCountsTest(ServerTestCase):
    """Deltas of /metrics around a known set of requests, exactly.

    One sequence at a time and a one-request queue: a long stream holds the
    engine while a request with a short deadline waits (and expires) in the
    queue, and one more request finds the queue full. Generated llama-110m
    weights: a step takes milliseconds, not microseconds, so the long stream
    outlasts the deadline on any machine, loaded or not."""

    EXTRA_ARGS = ("--model", "dummy:llama-110m", "--max-num-seqs", "1", "--max-queued-requests", "1")
    DEADLINE_S = 1.0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        stub = cls.stub
        server = cls.server
        holder_req, holder_prompt = long_request(stub, "Sue went to the park")
        deadline_req, deadline_prompt = long_request(stub, "One day")
        cls.before = server.scrape()

        # 3 unary and 2 streams that complete.
        completed = Completed()
        run_unary(stub, completed, request("Once upon a time", 12))
        run_unary(stub, completed, request("The cat sat", 8))
        run_unary(stub, completed, request("Tom had a ball", 7, seed=5))
        run_stream(stub, completed, request("Lily", 10))
        run_stream(stub, completed, request("A big dog", 3))
        cls.completed = completed
        cls.mid = server.scrape()  # completed requests only

        # 2 refused as invalid: empty text; top_p out of range.
        assert_refused(stub, pb.GenerateRequest(text=""), grpc.StatusCode.INVALID_ARGUMENT)
        assert_refused(stub, pb.GenerateRequest(text="Lily", sampling=pb.SamplingParams(top_p=2.0)),
                       grpc.StatusCode.INVALID_ARGUMENT)

        # A long stream runs (the client has its first message) ...
        holder = stub.GenerateStream(holder_req, timeout=RPC_TIMEOUT_S)
        first = next(holder)
        # ... a request waits behind it, with a deadline well inside its run ...
        deadline_s = cls.DEADLINE_S
        deadline_call = stub.Generate.future(deadline_req, timeout=deadline_s)
        wait_for("the deadline request in the queue",
                 lambda: server.scrape().value("inferd_requests_waiting") == 1, timeout=deadline_s)
        # ... so the queue is full for the next one.
        assert_refused(stub, request("Ben", 4), grpc.StatusCode.RESOURCE_EXHAUSTED)
        with check.assertRaises(grpc.RpcError) as caught:
            deadline_call.result()
        check.assertEqual(caught.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # Then the client of the long stream goes away.
        check.assertFalse(holder.done(), f"the long stream ended within {deadline_s:.3f}s: make it longer")
        holder.cancel()
        cls.holder_read = len(first.token_ids)
        cls.holder_max_tokens = holder_req.stopping.max_tokens
        cls.deadline_max_tokens = deadline_req.stopping.max_tokens
        cls.admitted_prompt_tokens = completed.prompt_tokens + holder_prompt + deadline_prompt

        cls.after = assert_settled(server.scrape, cls.before, 5 + 2 + 3)

    def delta(self, name, scrape=None, **labels):
        return (scrape or self.after).value(name, **labels) - self.before.value(name, **labels)

    def test_requests_total_by_status(self):
        deltas = {status: self.delta("inferd_requests_total", status=status) for status in STATUSES}
        self.assertEqual(deltas, {"ok": 5, "invalid_argument": 2, "resource_exhausted": 1, "cancelled": 1,
                                  "deadline_exceeded": 1, "unavailable": 0, "internal": 0})

    def test_deadline_request_counted_as_deadline_exceeded(self):
        self.assertEqual(self.delta("inferd_requests_total", status="deadline_exceeded"), 1)
        self.assertEqual(self.delta("grpc_server_handled_total", grpc_method="Generate", grpc_code="DeadlineExceeded"),
                         1)

    def test_prompt_tokens_of_admitted_requests(self):
        self.assertEqual(self.delta("inferd_prompt_tokens_total", self.mid), self.completed.prompt_tokens)
        self.assertEqual(self.delta("inferd_prompt_tokens_total"), self.admitted_prompt_tokens,
                         "completed, cancelled and deadline requests; not the refused ones")

    def test_generation_tokens(self):
        # Completed requests: exactly what their clients received.
        self.assertEqual(self.delta("inferd_generation_tokens_total", self.mid), self.completed.tokens)
        # With the cancelled stream and the deadline request: the engine may
        # have generated tokens their clients never read, so bounds only.
        total = self.delta("inferd_generation_tokens_total")
        self.assertGreaterEqual(total, self.completed.tokens + self.holder_read)
        self.assertLessEqual(total, self.completed.tokens + self.holder_max_tokens + self.deadline_max_tokens)
        self.assertEqual(total, self.delta("inferd_request_generation_tokens_sum"),
                         "the token counter agrees with the per-request histogram")

    def test_per_request_histograms_count_admitted_requests(self):
        admitted = 5 + 2  # the completed ones, the cancelled stream and the deadline request
        for name in PER_REQUEST_HISTOGRAMS:
            with self.subTest(name):
                self.assertEqual(self.delta(f"{name}_count", self.mid), 5)
                self.assertEqual(self.delta(f"{name}_count"), admitted)
                self.assertEqual(self.delta(f"{name}_bucket", le="+Inf"), admitted)
        self.assertEqual(self.delta("inferd_request_finished_total"), 5, "finish reasons: completed requests only")

    def test_grpc_handled_and_started(self):
        def handled(method, code):
            return self.delta("grpc_server_handled_total", grpc_method=method, grpc_code=code)
        self.assertEqual(handled("Generate", "InvalidArgument"), 2)
        self.assertEqual(handled("Generate", "ResourceExhausted"), 1)
        self.assertEqual(handled("Generate", "OK"), 3)
        self.assertEqual(handled("GenerateStream", "OK"), 2)
        self.assertEqual(handled("GenerateStream", "Canceled"), 1)
        # The deadline request: DeadlineExceeded, or Canceled with the bug above.
        self.assertEqual(handled("Generate", "DeadlineExceeded") + handled("Generate", "Canceled"), 1)
        # 3 ok, 2 invalid, the deadline request, the refused one.
        self.assertEqual(self.delta("grpc_server_started_total", grpc_method="Generate"), 7)
        self.assertEqual(self.delta("grpc_server_started_total", grpc_method="GenerateStream"), 3)


if __name__ == "__main__":
    unittest.main()

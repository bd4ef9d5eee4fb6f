"""Issue 12, security, from Python's grpcio: API keys as `authorization:
Bearer KEY` metadata, TLS, and mTLS against the real `inferd serve`.

Certificates are made at test time by tests/integration/make_test_certs.sh
(openssl). The same features have C++ client tests in
tests/integration/security_test.cc.
"""

import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import unittest
import urllib.error

import grpc

from inferd_testing import SOURCE_DIR, InferdServer, free_port, http_get, pb, pb_grpc, wait_for

KEY_A = "sk-py-alpha-0123456789"
KEY_B = "sk-py-bravo-9876543210"


def make_certs(directory, prefix=""):
    subprocess.run([os.path.join(SOURCE_DIR, "tests", "integration", "make_test_certs.sh"), directory, prefix],
                   check=True, capture_output=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def http_request(server, method, path, key=None, body=None, authorization=None):
    """One exchange with the OpenAI HTTP API: (status, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if authorization:
            headers["Authorization"] = authorization
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


def generate(stub, key=None, timeout=30):
    metadata = [("authorization", f"Bearer {key}")] if key else None
    return stub.Generate(pb.GenerateRequest(text="Once", stopping=pb.StoppingCriteria(max_tokens=2)),
                         metadata=metadata, timeout=timeout)


class Servers(unittest.TestCase):
    """Each test starts its own server (flags differ); stopped with SIGTERM, exit 0."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="inferd-security-")
        self.addCleanup(shutil.rmtree, self.dir)

    def start(self, *args, credentials=None, **metrics):
        server = InferdServer(*args, credentials=credentials, **metrics)
        self.addCleanup(server.remove_log)
        self.addCleanup(server.kill)
        server.wait_until_ready()
        self.addCleanup(lambda: self.assertEqual(server.stop(), 0, server.log()))
        return server

    def tls(self, ca="ca.pem", client=False, prefix=""):
        return grpc.ssl_channel_credentials(
            root_certificates=read(os.path.join(self.dir, ca)),
            private_key=read(os.path.join(self.dir, prefix + "client.key")) if client else None,
            certificate_chain=read(os.path.join(self.dir, prefix + "client.pem")) if client else None)


class ApiKeyTest(Servers):

    def test_keys_are_required_checked_and_counted_by_tenant(self):
        keys = os.path.join(self.dir, "keys.txt")
        with open(keys, "w") as f:
            f.write(f"# keys\n{KEY_A} alpha\n{KEY_B}\n")
        server = self.start("--api-keys-file", keys)
        with self.assertRaises(grpc.RpcError) as missing:
            generate(server.stub)
        self.assertEqual(missing.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as wrong:
            generate(server.stub, key="sk-nope")
        self.assertEqual(wrong.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(len(generate(server.stub, key=KEY_A).token_ids), 2)
        generate(server.stub, key=KEY_B)
        self.assertEqual(server.health("inferd.v1.Inference"), "SERVING")  # health needs no key
        scrape = server.scrape()
        self.assertEqual(scrape.value("inferd_tenant_requests_total", tenant="alpha"), 1)
        self.assertEqual(scrape.value("inferd_tenant_requests_total", tenant="default"), 1)
        for secret in (KEY_A, KEY_B, "sk-nope"):
            self.assertNotIn(secret, server.log())
            self.assertNotIn(secret, str(scrape.samples))


    def test_http_api_takes_the_same_keys(self):
        keys = os.path.join(self.dir, "keys.txt")
        with open(keys, "w") as f:
            f.write(f"{KEY_A} alpha\n{KEY_B}\n")
        server = self.start("--api-keys-file", keys)
        completion = {"prompt": "Once", "max_tokens": 2}
        # OpenAI's answers: a missing key (code null), a wrong one (invalid_api_key).
        for key, authorization, code in ((None, None, None), ("sk-nope", None, "invalid_api_key"),
                                         (None, f"Basic {KEY_A}", "invalid_api_key")):
            for method, path, body in (("POST", "/v1/completions", completion), ("GET", "/v1/models", None),
                                       ("POST", "/v1/chat/completions", {"messages": []}),
                                       ("GET", "/v1/no-such-endpoint", None)):
                status, error = http_request(server, method, path, key=key, body=body, authorization=authorization)
                self.assertEqual(status, 401, (path, error))
                self.assertEqual(error["error"]["type"], "invalid_request_error", error)
                self.assertEqual(error["error"]["code"], code, error)
                self.assertIsNone(error["error"]["param"], error)
                self.assertIn("API key", error["error"]["message"], error)
        # /health and /version stay open.
        self.assertEqual(http_request(server, "GET", "/health")[0], 200)
        self.assertEqual(http_request(server, "GET", "/version")[0], 200)
        self.assertEqual(http_request(server, "GET", "/v1/models", key=KEY_B)[0], 200)
        status, body = http_request(server, "POST", "/v1/completions", key=KEY_A, body=completion)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["usage"]["completion_tokens"], 2)
        # The request runs in its tenant's request-id scope, as gRPC's do.
        self.assertTrue(wait_for("the request log", lambda: re.search(
            rf"request {re.escape(body['id'])}-0 \w+: .*protocol=http caller=tenant:alpha", server.log())))
        scrape = server.scrape()
        self.assertEqual(scrape.value("inferd_tenant_requests_total", tenant="alpha"), 1)
        self.assertEqual(scrape.value("inferd_tenant_requests_total", tenant="default"), 1)
        for secret in (KEY_A, KEY_B, "sk-nope"):
            self.assertNotIn(secret, server.log())
            self.assertNotIn(secret, str(scrape.samples))


class TlsTest(Servers):

    def test_tls_serves_python_clients_and_refuses_plaintext(self):
        make_certs(self.dir)
        server = self.start("--tls-cert", os.path.join(self.dir, "server.pem"),
                            "--tls-key", os.path.join(self.dir, "server.key"), credentials=self.tls())
        self.assertEqual(len(generate(server.stub).token_ids), 2)
        plaintext = pb_grpc.InferenceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        with self.assertRaises(grpc.RpcError) as refused:
            generate(plaintext, timeout=3)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_mutual_tls_needs_a_client_certificate_with_an_api_key_on_top(self):
        make_certs(self.dir)
        keys = os.path.join(self.dir, "keys.txt")
        with open(keys, "w") as f:
            f.write(f"{KEY_A} alpha\n")
        server = self.start("--tls-cert", os.path.join(self.dir, "server.pem"),
                            "--tls-key", os.path.join(self.dir, "server.key"),
                            "--tls-client-ca", os.path.join(self.dir, "ca.pem"),
                            "--api-keys-file", keys, credentials=self.tls(client=True))
        self.assertEqual(len(generate(server.stub, key=KEY_A).token_ids), 2)
        with self.assertRaises(grpc.RpcError) as no_key:
            generate(server.stub)
        self.assertEqual(no_key.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        anonymous = pb_grpc.InferenceStub(server.new_channel(self.tls(client=False)))
        with self.assertRaises(grpc.RpcError) as refused:
            generate(anonymous, key=KEY_A, timeout=3)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_a_renewed_certificate_is_used_without_a_restart(self):
        make_certs(self.dir)
        make_certs(self.dir, "next-")
        server = self.start("--tls-cert", os.path.join(self.dir, "server.pem"),
                            "--tls-key", os.path.join(self.dir, "server.key"), credentials=self.tls())
        for name in ("server.key", "server.pem"):
            shutil.copy(os.path.join(self.dir, "next-" + name), os.path.join(self.dir, name + ".new"))
            os.replace(os.path.join(self.dir, name + ".new"), os.path.join(self.dir, name))

        def next_ca_works():
            stub = pb_grpc.InferenceStub(server.new_channel(self.tls(ca="next-ca.pem")))
            try:
                return len(generate(stub, timeout=3).token_ids) == 2
            except grpc.RpcError:
                return False

        wait_for("the renewed certificate", next_ca_works, timeout=15, interval=0.2)


class MetricsPortTest(Servers):
    """--metrics-tls and --metrics-require-key, as a scraper and a probe see them."""

    def https(self, client=True):
        context = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.pem"))
        if client:
            context.load_cert_chain(os.path.join(self.dir, "client.pem"), os.path.join(self.dir, "client.key"))
        return context

    def test_metrics_over_mutual_tls_with_an_api_key(self):
        make_certs(self.dir)
        keys = os.path.join(self.dir, "keys.txt")
        with open(keys, "w") as f:
            f.write(f"{KEY_A} alpha\n")
        server = self.start("--tls-cert", os.path.join(self.dir, "server.pem"),
                            "--tls-key", os.path.join(self.dir, "server.key"),
                            "--tls-client-ca", os.path.join(self.dir, "ca.pem"),
                            "--api-keys-file", keys, "--metrics-tls", "--metrics-require-key",
                            credentials=self.tls(client=True), metrics_tls=self.https(), metrics_key=KEY_A)
        self.assertIn("https://", server.log())
        self.assertIn("inferd_model_info", server.scrape().types)  # with the client certificate and the key
        with self.assertRaises(urllib.error.HTTPError) as no_key:
            http_get(server.metrics_url(), context=self.https())
        self.assertEqual(no_key.exception.code, 401)
        self.assertEqual(no_key.exception.headers["WWW-Authenticate"], "Bearer")
        with self.assertRaises(urllib.error.HTTPError) as wrong_key:
            http_get(server.metrics_url(), context=self.https(), headers={"Authorization": "Bearer sk-nope"})
        self.assertEqual(wrong_key.exception.code, 401)
        # Probes need no key.
        self.assertEqual(http_get(server.metrics_url("/healthz"), context=self.https()), "ok\n")
        self.assertEqual(http_get(server.metrics_url("/readyz"), context=self.https()), "ready\n")
        # No client certificate, or plain HTTP: no HTTP answer (at most a TLS alert).
        with self.assertRaises((OSError, http.client.HTTPException)):  # URLError and SSLError are OSErrors
            http_get(server.metrics_url("/healthz"), context=self.https(client=False), timeout=3)
        with self.assertRaises((OSError, http.client.HTTPException)):
            http_get(f"http://127.0.0.1:{server.metrics_port}/healthz", timeout=3)
        self.assertNotIn(KEY_A, server.log())

    def test_a_real_prometheus_scrapes_over_mutual_tls_with_a_bearer_key(self):
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            self.skipTest("no prometheus (Debian package prometheus)")
        make_certs(self.dir)
        keys = os.path.join(self.dir, "keys.txt")
        with open(keys, "w") as f:
            f.write(f"{KEY_A} prometheus\n")
        with open(os.path.join(self.dir, "key"), "w") as f:
            f.write(KEY_A)
        server = self.start("--tls-cert", os.path.join(self.dir, "server.pem"),
                            "--tls-key", os.path.join(self.dir, "server.key"),
                            "--tls-client-ca", os.path.join(self.dir, "ca.pem"),
                            "--api-keys-file", keys, "--metrics-tls", "--metrics-require-key",
                            credentials=self.tls(client=True), metrics_tls=self.https(), metrics_key=KEY_A)
        config = os.path.join(self.dir, "prometheus.yml")
        d = self.dir
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: inferd
    scheme: https
    tls_config: {{ca_file: {d}/ca.pem, cert_file: {d}/client.pem, key_file: {d}/client.key, server_name: localhost}}
    authorization: {{type: Bearer, credentials_file: {d}/key}}
    static_configs:
      - targets: ["127.0.0.1:{server.metrics_port}"]
""")
        url = f"http://127.0.0.1:{free_port()}"
        with open(os.path.join(d, "prometheus.log"), "wb") as log:
            process = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={d}/data",
                                        f"--web.listen-address={url[len('http://'):]}"],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(process.wait, 30)
        self.addCleanup(process.terminate)

        def scraped():
            try:
                body = json.loads(http_get(f"{url}/api/v1/query?query=inferd_model_info", timeout=2))
            except OSError:
                return False
            return bool(body.get("data", {}).get("result"))

        wait_for("Prometheus to scrape inferd over mTLS with the key", scraped, timeout=30, interval=0.2)


if __name__ == "__main__":
    unittest.main()

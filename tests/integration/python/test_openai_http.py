"""The OpenAI-compatible HTTP API, from Python's standard library only: raw
HTTP on the wire (framing, status codes, the error shape), malformed and
oversized requests, slow readers, many connections, aborts on disconnect
(checked through the KV-cache metrics), drain, and the same tokens as gRPC.

Runs against the real `inferd serve` on the bundled model (inferd_testing.py).
"""

import http.client
import json
import os
import re
import signal
import socket
import time
import unittest

from inferd_testing import RPC_TIMEOUT_S, ServerTestCase, wait_for, pb

PROMPT = "Once upon a time"


def request(port, method, path, body=None, headers=None, timeout=RPC_TIMEOUT_S):
    """One HTTP exchange on a fresh connection: (status, headers, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post(port, path, body, **kwargs):
    status, headers, data = request(port, "POST", path, body, **kwargs)
    return status, headers, json.loads(data) if data else None


def sse_events(raw):
    """The `data:` payloads of an SSE body, checking OpenAI's framing."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), repr(text[-40:])
    events = text[:-2].split("\n\n")
    out = []
    for event in events:
        assert event.startswith("data: "), repr(event)
        out.append(event[len("data: "):])
    return out


def stream_chunks(port, path, body):
    status, headers, raw = request(port, "POST", path, body)
    assert status == 200, (status, raw)
    assert headers["Content-Type"] == "text/event-stream", headers
    events = sse_events(raw)
    assert events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


def raw_connection(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=RPC_TIMEOUT_S)
    return s


def send_post(sock, path, body):
    data = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)


def read_head(sock):
    """Reads up to the end of the response header; (status line, rest read so far)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before the header end: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode(), rest


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


class OpenAiHttpTest(ServerTestCase):
    EXTRA_ARGS = ("--chat-template", "chatml", "--http-max-body-bytes", "65536")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.port = cls.server.http_port
        status, _, body = request(cls.port, "GET", "/v1/models")
        cls.model = json.loads(body)["data"][0]["id"]

    def complete(self, **fields):
        body = {"model": self.model, "prompt": PROMPT, "max_tokens": 8}
        body.update(fields)
        return post(self.port, "/v1/completions", body)

    def assert_error(self, status, body, want_status, param=None, code=None):
        self.assertEqual(status, want_status, body)
        error = body["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"}, error)
        self.assertTrue(error["message"])
        if param is not None:
            self.assertEqual(error["param"], param, error)
        if code is not None:
            self.assertEqual(error["code"], code, error)
        return error

    # --- endpoints ------------------------------------------------------

    def test_models_health_version(self):
        status, _, body = request(self.port, "GET", "/v1/models")
        self.assertEqual(status, 200)
        models = json.loads(body)
        self.assertEqual(models["object"], "list")
        self.assertEqual(models["data"][0]["object"], "model")
        self.assertEqual(request(self.port, "GET", "/health")[0], 200)
        status, _, body = request(self.port, "GET", "/version")
        self.assertEqual(status, 200)
        self.assertRegex(json.loads(body)["version"], r"^\d+\.\d+")

    def test_completion(self):
        status, headers, body = self.complete(temperature=0, max_tokens=5, ignore_eos=True)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(body["object"], "text_completion")
        self.assertRegex(body["id"], r"^cmpl-")
        self.assertEqual(body["model"], self.model)
        choice = body["choices"][0]
        self.assertEqual(choice["finish_reason"], "length")
        self.assertTrue(choice["text"])
        self.assertEqual(body["usage"]["completion_tokens"], 5)
        self.assertEqual(body["usage"]["total_tokens"],
                         body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"])

    def test_stop_string_and_token_ids_prompt(self):
        status, _, greedy = self.complete(temperature=0, max_tokens=30, ignore_eos=True)
        text = greedy["choices"][0]["text"]
        stop = text[10:14]
        status, _, body = self.complete(temperature=0, max_tokens=30, ignore_eos=True, stop=[stop])
        self.assertEqual(status, 200, body)
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        self.assertEqual(body["choices"][0]["stop_reason"], stop)
        self.assertEqual(body["choices"][0]["text"], text[:text.index(stop)])
        # Token ids as the prompt: BOS + the text's ids give the same output.
        ids = list(self.stub.Tokenize(pb.TokenizeRequest(text=PROMPT), timeout=RPC_TIMEOUT_S).token_ids)
        status, _, by_ids = self.complete(prompt=ids, temperature=0, max_tokens=30, ignore_eos=True)
        self.assertEqual(status, 200, by_ids)
        self.assertEqual(by_ids["choices"][0]["text"], text)

    # --- bad input --------------------------------------------------------

    def test_malformed_json(self):
        for body in ("{", "not json", '{"prompt": "x",}', "[1, 2]", '"a string"', b'{"prompt": "\xff\xfe"}'):
            with self.subTest(body=body):
                status, _, raw = request(self.port, "POST", "/v1/completions", body)
                self.assert_error(status, json.loads(raw), 400)

    def test_wrong_types(self):
        cases = [
            ({"temperature": "hot"}, "temperature"),
            ({"max_tokens": "5"}, "max_tokens"),
            ({"max_tokens": 0}, "max_tokens"),
            ({"max_tokens": 2.5}, "max_tokens"),
            ({"prompt": 5}, "prompt"),
            ({"prompt": ""}, "prompt"),
            ({"prompt": [1, "a"]}, "prompt"),
            ({"prompt": [100000]}, "prompt"),
            ({"stop": 3}, "stop"),
            ({"n": 0}, "n"),
            ({"n": 1000}, "n"),
            ({"top_p": 0}, "top_p"),
            ({"temperature": -1}, "temperature"),
            ({"stream": "yes"}, "stream"),
            ({"stream_options": {"include_usage": True}}, "stream_options"),
            ({"logprobs": 1000}, "logprobs"),
            ({"echo": True}, "echo"),
            ({"stop_token_ids": [-1]}, "stop_token_ids"),
            ({"model": 7}, "model"),
        ]
        for fields, param in cases:
            with self.subTest(fields=fields):
                status, _, body = self.complete(**fields)
                self.assert_error(status, body, 400, param=param)
        chat_cases = [
            ({"messages": "hi"}, "messages"),
            ({"messages": []}, "messages"),
            ({"messages": [{"role": "user", "content": 5}]}, "messages"),
            ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
            ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}, "messages"),
            ({"top_logprobs": 2}, "top_logprobs"),
        ]
        for fields, param in chat_cases:
            with self.subTest(fields=fields):
                body = {"model": self.model, "messages": [{"role": "user", "content": "Hi"}]}
                body.update(fields)
                status, _, answer = post(self.port, "/v1/chat/completions", body)
                self.assert_error(status, answer, 400, param=param)

    def test_context_too_long(self):
        status, _, body = self.complete(max_tokens=100000)
        self.assert_error(status, body, 400, param="max_tokens", code="context_length_exceeded")

    def test_unknown_fields_are_ignored(self):
        status, _, body = self.complete(frobnicate={"deep": [1, 2]}, user="someone", logit_bias=None)
        self.assertEqual(status, 200, body)

    def test_unknown_model_path_and_method(self):
        status, _, body = self.complete(model="gpt-4")
        self.assert_error(status, body, 404, param="model", code="model_not_found")
        status, _, raw = request(self.port, "GET", "/v1/nothing")
        self.assert_error(status, json.loads(raw), 404)
        status, _, raw = request(self.port, "GET", "/v1/completions")
        self.assert_error(status, json.loads(raw), 405)

    def test_huge_body_is_413(self):
        # The header announces more than the limit: the answer comes before the body.
        sock = raw_connection(self.port)
        try:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 10000000\r\n\r\n")
            head, rest = read_head(sock)
            self.assertTrue(head.startswith("HTTP/1.1 413"), head)
        finally:
            sock.close()
        # A chunked body that grows past the limit while it is read.
        sock = raw_connection(self.port)
        try:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = b"x" * 32768
            try:
                for _ in range(4):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed
            head, rest = read_head(sock)
            self.assertTrue(head.startswith("HTTP/1.1 413"), head)
            self.assertIn('"request_too_large"', rest.decode() + sock.recv(65536).decode())
        finally:
            sock.close()
        # The server is fine afterwards.
        self.assertEqual(self.complete()[0], 200)

    # --- streaming --------------------------------------------------------

    def test_stream_format_and_usage(self):
        chunks = stream_chunks(self.port, "/v1/completions",
                               {"model": self.model, "prompt": PROMPT, "max_tokens": 6, "ignore_eos": True,
                                "stream": True, "stream_options": {"include_usage": True}})
        self.assertTrue(all(c["object"] == "text_completion" for c in chunks))
        self.assertEqual(len({c["id"] for c in chunks}), 1)
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(chunks[-1]["usage"]["completion_tokens"], 6)
        self.assertTrue(all(c["usage"] is None for c in chunks[:-1]))
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "length")
        self.assertTrue(all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2]))
        # Chat: the role first, then content deltas, then an empty delta with the reason.
        chat = stream_chunks(self.port, "/v1/chat/completions",
                             {"model": self.model, "messages": [{"role": "user", "content": "Hi"}],
                              "max_completion_tokens": 4, "ignore_eos": True, "stream": True})
        self.assertEqual(chat[0]["object"], "chat.completion.chunk")
        self.assertEqual(chat[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertEqual(chat[-1]["choices"][0]["delta"], {})
        self.assertEqual(chat[-1]["choices"][0]["finish_reason"], "length")
        self.assertNotIn("usage", chat[0])

    def test_n_shares_the_prefill(self):
        prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
        before = self.server.scrape().value("inferd_prefix_cache_hit_tokens_total")
        status, _, body = self.complete(prompt=prompt, n=3, max_tokens=5, temperature=1.0, seed=11,
                                        ignore_eos=True)
        self.assertEqual(status, 200, body)
        self.assertEqual([c["index"] for c in body["choices"]], [0, 1, 2])
        self.assertEqual(body["usage"]["completion_tokens"], 15)
        prompt_tokens = body["usage"]["prompt_tokens"]
        full_blocks = (prompt_tokens - 1) // 16 * 16
        self.assertGreater(full_blocks, 0)
        hits = self.server.scrape().value("inferd_prefix_cache_hit_tokens_total") - before
        self.assertGreaterEqual(hits, 2 * full_blocks)
        self.assertGreaterEqual(body["usage"]["prompt_tokens_details"]["cached_tokens"], 2 * full_blocks)
        # Seeded: the same request gives the same three texts.
        again = self.complete(prompt=prompt, n=3, max_tokens=5, temperature=1.0, seed=11, ignore_eos=True)[2]
        self.assertEqual([c["text"] for c in again["choices"]], [c["text"] for c in body["choices"]])

    def test_logprobs(self):
        status, _, body = self.complete(logprobs=2, max_tokens=4, ignore_eos=True)
        self.assertEqual(status, 200, body)
        lp = body["choices"][0]["logprobs"]
        self.assertEqual(len(lp["tokens"]), 4)
        self.assertEqual("".join(lp["tokens"]), body["choices"][0]["text"])
        self.assertEqual(lp["text_offset"][0], 0)
        for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
            self.assertLessEqual(logprob, 0)
            self.assertIn(token, top)
            self.assertLessEqual(len(top), 3)
        status, _, chat = post(self.port, "/v1/chat/completions",
                               {"model": self.model, "messages": [{"role": "user", "content": "Hi"}],
                                "max_tokens": 3, "ignore_eos": True, "logprobs": True, "top_logprobs": 2})
        self.assertEqual(status, 200, chat)
        content = chat["choices"][0]["logprobs"]["content"]
        self.assertEqual(len(content), 3)
        for item in content:
            self.assertEqual(len(item["top_logprobs"]), 2)
            self.assertEqual(bytes(item["bytes"]).decode("utf-8", "replace"), item["token"])

    def test_slow_reader(self):
        """A client that does not read holds back only its own stream."""
        slow = raw_connection(self.port)
        try:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            send_post(slow, "/v1/completions", {"model": self.model, "prompt": PROMPT, "max_tokens": 400,
                                                "ignore_eos": True, "stream": True, "logprobs": 5})
            time.sleep(0.5)
            started = time.monotonic()
            self.assertEqual(self.complete(max_tokens=4)[0], 200)
            self.assertLess(time.monotonic() - started, 30)
            # Now read it all, slowly at first: every event arrives, in order.
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                chunk = slow.recv(1024)
                if not chunk:
                    break
                data += chunk
                if len(data) < 8192:
                    time.sleep(0.01)
            self.assertIn(b"data: [DONE]\n\n", data)
            self.assertEqual(data.count(b'"finish_reason":"length"'), 1)
        finally:
            slow.close()

    # --- disconnects, load and threads ---------------------------------------

    def test_thousand_parallel_connections(self):
        socks = [raw_connection(self.port) for _ in range(1000)]
        try:
            for i, sock in enumerate(socks):
                if i % 2:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                else:
                    send_post(sock, "/v1/completions", {"model": self.model, "prompt": PROMPT, "max_tokens": 2})
            for sock in socks:
                head, _ = read_head(sock)
                self.assertTrue(head.startswith("HTTP/1.1 200"), head)
        finally:
            for sock in socks:
                sock.close()

    def test_metrics_count_http_requests(self):
        before = self.server.scrape()
        self.assertEqual(self.complete()[0], 200)
        self.assertEqual(self.complete(temperature="x")[0], 400)
        after = wait_for("the request counted", lambda: (
            s := self.server.scrape()).value("inferd_requests_total", protocol="http", status="ok") >
            before.value("inferd_requests_total", protocol="http", status="ok") and s)
        self.assertEqual(after.value("inferd_requests_total", protocol="http", status="invalid_argument") -
                         before.value("inferd_requests_total", protocol="http", status="invalid_argument"), 1)

    # --- the same engine road as gRPC -------------------------------------

    def test_same_tokens_as_grpc_stream(self):
        # Chat goes through the same template path as gRPC's `messages` prompts.
        chat_prompt = pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="Tell me a story")])
        cases = [
            ("/v1/completions", {"prompt": PROMPT}, PROMPT),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me a story"}]}, chat_prompt),
        ]
        for path, fields, grpc_prompt in cases:
            with self.subTest(path=path):
                body = {"model": self.model, "max_tokens": 40, "temperature": 0.9, "seed": 1234, "stream": True,
                        "logprobs": 1 if path == "/v1/completions" else True,
                        "stream_options": {"include_usage": True}}
                body.update(fields)
                chunks = stream_chunks(self.port, path, body)
                text, logprobs = "", []
                for chunk in chunks:
                    for choice in chunk["choices"]:
                        if path == "/v1/completions":
                            text += choice["text"]
                            if choice["logprobs"]:
                                logprobs += choice["logprobs"]["token_logprobs"]
                        else:
                            text += choice["delta"].get("content", "")
                            if choice["logprobs"]:
                                logprobs += [c["logprob"] for c in choice["logprobs"]["content"]]
                grpc_request = (pb.GenerateRequest(text=grpc_prompt, logprobs=1) if isinstance(grpc_prompt, str)
                                else pb.GenerateRequest(messages=grpc_prompt, logprobs=1))
                grpc_request.sampling.temperature = 0.9
                grpc_request.sampling.seed = 1234
                grpc_request.stopping.max_tokens = 40
                _, ids, grpc_stream_text = self.stream(grpc_request)
                self.assertEqual(text, grpc_stream_text)
                self.assertEqual(chunks[-1]["usage"]["completion_tokens"], len(ids))
                grpc_logprobs = [lp.logprob for m in self.stub.GenerateStream(grpc_request, timeout=RPC_TIMEOUT_S)
                                 for lp in m.logprobs]
                self.assertEqual(len(logprobs), len(ids))
                for a, b in zip(logprobs, grpc_logprobs):
                    self.assertAlmostEqual(a, b, places=4)


# The two below hold requests running for a while: llama-110m's generated
# weights decode slowly enough on a CPU (the bundled model would finish first).
class QueueFullTest(ServerTestCase):
    EXTRA_ARGS = ("--model", "dummy:llama-110m", "--max-num-seqs", "1", "--max-queued-requests", "1",
                  "--queue-full-retry-delay-ms", "1500")

    def test_full_queue_is_429_with_retry_after(self):
        port = self.server.http_port
        model = json.loads(request(port, "GET", "/v1/models")[2])["data"][0]["id"]
        body = {"model": model, "prompt": PROMPT, "max_tokens": 200, "ignore_eos": True, "stream": True}
        running, queued = raw_connection(port), raw_connection(port)
        try:
            for sock in (running, queued):
                send_post(sock, "/v1/completions", body)
                head, rest = read_head(sock)
                self.assertTrue(head.startswith("HTTP/1.1 200"), head)
                # The first is running (out of the queue) once its first token came.
                while sock is running and b"data: " not in rest:
                    rest += sock.recv(65536)
            status, headers, raw = request(port, "POST", "/v1/completions", dict(body, stream=False))
            self.assertEqual(status, 429, raw)
            self.assertEqual(headers["Retry-After"], "2")
            self.assertEqual(json.loads(raw)["error"]["type"], "rate_limit_error")
        finally:
            running.close()
            queued.close()


class HeldStreamsTest(ServerTestCase):
    """500 streams open at once: the server's thread count must not grow
    with them (the figures are printed for benchmarks/RESULTS.md). The
    streams are held by the engine (llama-110m is slow on a CPU) until the
    client closes them, which aborts all 500."""
    EXTRA_ARGS = ("--model", "dummy:llama-110m", "--max-num-seqs", "256")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.port = cls.server.http_port
        cls.model = json.loads(request(cls.port, "GET", "/v1/models")[2])["data"][0]["id"]

    def test_disconnect_aborts_and_frees_kv_blocks(self):
        sock = raw_connection(self.port)
        send_post(sock, "/v1/completions", {"model": self.model, "prompt": PROMPT, "max_tokens": 400,
                                            "ignore_eos": True, "stream": True})
        head, rest = read_head(sock)
        self.assertTrue(head.startswith("HTTP/1.1 200"), head)
        while b'"id":"' not in rest:
            rest += sock.recv(4096)
        call_id = re.search(rb'"id":"(cmpl-[0-9a-f]+)"', rest).group(1).decode()
        wait_for("KV blocks in use", lambda: self.server.scrape().value("inferd_kv_cache_blocks_used") > 0)
        sock.close()
        wait_for("the KV blocks back", lambda: self.server.scrape().value("inferd_kv_cache_blocks_used") == 0)
        ended = self.wait_for_log(rf"request {call_id}-0 CANCELLED: .*output_tokens=(\d+)")
        self.assertIsNotNone(ended, self.server.log()[-2000:])
        self.assertLess(int(ended.group(1)), 400)

    def test_500_streams_hold_a_bounded_thread_count(self):
        pid = self.server.process.pid
        threads_before, rss_before = proc_status(pid)
        socks = [raw_connection(self.port) for _ in range(500)]
        try:
            for sock in socks:
                send_post(sock, "/v1/completions", {"model": self.model, "prompt": PROMPT, "max_tokens": 400,
                                                    "ignore_eos": True, "stream": True})
            for sock in socks:
                head, _ = read_head(sock)
                self.assertTrue(head.startswith("HTTP/1.1 200"), head)
            # The engine's counts are published after each step.
            wait_for("500 requests live in the engine", lambda: (
                (s := self.server.scrape()).value("inferd_requests_running") +
                s.value("inferd_requests_waiting") == 500), timeout=120)
            live = 500
            threads, rss = proc_status(pid)
            print(f"\n500 open SSE streams ({live:.0f} live in the engine): threads {threads_before} -> {threads}, "
                  f"RSS {rss_before / 1024:.1f} -> {rss / 1024:.1f} MiB")
            self.assertLessEqual(threads, threads_before + 2)
        finally:
            for sock in socks:
                sock.close()
        wait_for("every aborted stream's KV blocks back",
                 lambda: self.server.scrape().value("inferd_kv_cache_blocks_used") == 0, timeout=120)


class DrainTest(ServerTestCase):
    # The drain must end the stream by finishing it: room for the 200 tokens
    # on a slow build (make test-asan's took longer than the default 30 s).
    EXTRA_ARGS = ("--model", "dummy:llama-110m", "--drain-timeout-seconds", "240")

    def test_sigterm_drains_http_streams(self):
        port = self.server.http_port
        model = json.loads(request(port, "GET", "/v1/models")[2])["data"][0]["id"]
        sock = raw_connection(port)
        send_post(sock, "/v1/completions", {"model": model, "prompt": PROMPT, "max_tokens": 200,
                                            "ignore_eos": True, "stream": True})
        head, rest = read_head(sock)
        self.assertTrue(head.startswith("HTTP/1.1 200"), head)
        self.server.process.send_signal(signal.SIGTERM)
        wait_for("draining", lambda: "draining" in self.server.log())
        status, _, raw = request(port, "GET", "/health")
        self.assertEqual(status, 503, raw)
        status, _, raw = request(port, "POST", "/v1/completions", {"model": model, "prompt": PROMPT})
        self.assertEqual(status, 503, raw)
        data = rest
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        self.assertIn(b'"finish_reason":"length"', data)
        self.assertTrue(data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), data[-60:])
        self.assertEqual(self.server.process.wait(timeout=60), 0)


if __name__ == "__main__":
    unittest.main()

// The official OpenAI Node client (the `openai` npm package, pinned in
// package-lock.json) against the real `inferd serve` on the bundled model:
// completions, chat, streaming, n, logprobs, errors, and a stream that the
// client aborts (its KV blocks come back, seen on /metrics).
//
// With INFERD_OPENAI_MODEL_DIR, the same client checks run against that
// model directory instead, with its own chat template (ctest
// openai_node_client_llama3: a tiny random-weight model with the real Llama 3
// tokenizer, tests/models/make_tiny_llama3.py); the checks that do not depend
// on the model (API keys, abort) run once, in the bundled model's run.
//
// INFERD_BINARY names the server binary (ctest sets it).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, mkdtempSync, openSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";

const binary = process.env.INFERD_BINARY;
const modelDir = process.env.INFERD_OPENAI_MODEL_DIR;
const MODEL_ARGS = modelDir ? ["--model", modelDir] : ["--chat-template", "chatml"];
const PROMPT = "Once upon a time";
let server;
let logPath;
let client;
let metricsPort;
let model;

function log() {
  return readFileSync(logPath, "utf8");
}

async function waitFor(what, predicate, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; server log:\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// The sum of the samples of `name` on /metrics whose labels include `labels`.
async function metric(name, labels = {}) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => have[key] === value)) sum += Number(match[3]);
  }
  return sum;
}

// Starts `inferd serve` with `args` on free ports; resolves once its model
// is loaded. Sets the module's server, client, metricsPort and model (and
// httpPort); the client sends `apiKey`.
let httpPort;
async function startServer(args, apiKey = "unused") {
  const dir = mkdtempSync(join(tmpdir(), "inferd-openai-"));
  logPath = join(dir, "server.log");
  const out = openSync(logPath, "w");
  server = spawn(binary, ["serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--http-port", "0",
                          ...args], { stdio: ["ignore", out, out] });
  httpPort = await waitFor("the HTTP port", () => log().match(/openai api on http:\/\/[^\s/]+:(\d+)\/v1/)?.[1]);
  metricsPort = await waitFor("the metrics port", () => log().match(/metrics on http:\/\/[^\s/]+:(\d+)\/metrics/)?.[1]);
  await waitFor("the model", () => log().includes("serving "), 60000);
  client = new OpenAI({ baseURL: `http://127.0.0.1:${httpPort}/v1`, apiKey, maxRetries: 0, timeout: 60000 });
  model = (await client.models.list()).data[0].id;
}

async function stopServer() {
  if (!server) return;
  const exited = new Promise((resolve) => server.on("exit", (code) => resolve(code)));
  server.kill("SIGTERM");
  assert.equal(await exited, 0, `the server did not exit cleanly:\n${log()}`);
  server = null;
}

before(async () => {
  assert.ok(binary, "set INFERD_BINARY to the inferd binary");
  await startServer(MODEL_ARGS);
});

after(stopServer);

test("models", async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].object, "model");
  assert.equal(models.data[0].id, model);
});

test("completion", async () => {
  const completion = await client.completions.create({ model, prompt: PROMPT, max_tokens: 8, temperature: 0 });
  assert.equal(completion.object, "text_completion");
  assert.equal(completion.choices.length, 1);
  assert.ok(completion.choices[0].text.length > 0);
  assert.ok(["length", "stop"].includes(completion.choices[0].finish_reason));
  assert.ok(completion.usage.prompt_tokens > 0);
  assert.ok(completion.usage.completion_tokens <= 8);
});

test("chat completion", async () => {
  const chat = await client.chat.completions.create({
    model,
    messages: [
      { role: "system", content: "You tell stories." },
      { role: "user", content: [{ type: "text", text: "Tell me one." }] },
    ],
    max_completion_tokens: 6,
    seed: 3,
  });
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.choices[0].message.role, "assistant");
  assert.equal(typeof chat.choices[0].message.content, "string");
  assert.ok(["length", "stop"].includes(chat.choices[0].finish_reason));
});

test("streaming equals the whole response (same seed)", async () => {
  const params = { model, prompt: PROMPT, max_tokens: 20, temperature: 0.8, seed: 42, ignore_eos: true };
  const whole = await client.completions.create(params);
  const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      text += choice.text;
      finish = choice.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, "length");
  assert.equal(usage.completion_tokens, 20);
});

test("chat streaming", async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Hi" }], max_tokens: 5, ignore_eos: true, stream: true,
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
  assert.ok(chunks.map((c) => c.choices[0].delta.content ?? "").join("").length > 0);
});

test("n choices", async () => {
  const completion = await client.completions.create({ model, prompt: PROMPT, max_tokens: 5, n: 3, seed: 5 });
  assert.deepEqual(completion.choices.map((c) => c.index), [0, 1, 2]);
  const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }],
                                                      max_tokens: 4, n: 2 });
  assert.equal(chat.choices.length, 2);
});

test("logprobs", async () => {
  const completion = await client.completions.create({ model, prompt: PROMPT, max_tokens: 4, logprobs: 3,
                                                       ignore_eos: true });
  const lp = completion.choices[0].logprobs;
  assert.equal(lp.tokens.length, 4);
  assert.equal(lp.token_logprobs.length, 4);
  assert.ok(lp.token_logprobs.every((x) => x <= 0));
  assert.ok(lp.top_logprobs.every((top) => Object.keys(top).length >= 1 && Object.keys(top).length <= 4));
  const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }],
                                                      max_tokens: 3, ignore_eos: true, logprobs: true,
                                                      top_logprobs: 2 });
  const content = chat.choices[0].logprobs.content;
  assert.equal(content.length, 3);
  assert.ok(content.every((t) => t.top_logprobs.length === 2 && Array.isArray(t.bytes)));
});

test("errors", async () => {
  await assert.rejects(client.completions.create({ model: "no-such-model", prompt: PROMPT }), (error) => {
    assert.ok(error instanceof OpenAI.NotFoundError, String(error));
    assert.equal(error.status, 404);
    assert.equal(error.code, "model_not_found");
    return true;
  });
  await assert.rejects(client.completions.create({ model, prompt: PROMPT, temperature: -1 }), (error) => {
    assert.ok(error instanceof OpenAI.BadRequestError, String(error));
    assert.equal(error.status, 400);
    assert.equal(error.param, "temperature");
    assert.equal(error.type, "invalid_request_error");
    return true;
  });
  await assert.rejects(client.completions.create({ model, prompt: PROMPT, max_tokens: 100000 }), (error) => {
    assert.equal(error.status, 400);
    assert.equal(error.code, "context_length_exceeded");
    return true;
  });
});

test("the Llama 3 chat template renders the prompt", { skip: !modelDir && "the bundled model's run" }, async () => {
  // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
  // <|start_header_id|>assistant<|end_header_id|>\n\n: 11 tokens, one BOS.
  const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }],
                                                      max_tokens: 1, ignore_eos: true });
  assert.equal(chat.usage.prompt_tokens, 11);
  // The template trims content and adds a system turn's header the same way.
  const withSystem = await client.chat.completions.create({
    model, messages: [{ role: "system", content: " Be brief. " }, { role: "user", content: "Hi" }],
    max_tokens: 1, ignore_eos: true });
  // + <|start_header_id|>system<|end_header_id|>\n\n "Be brief." <|eot_id|>
  assert.ok(withSystem.usage.prompt_tokens > chat.usage.prompt_tokens + 4, JSON.stringify(withSystem.usage));
});

test("API keys: the client's apiKey is checked", { skip: modelDir && "run with the bundled model" }, async () => {
  await stopServer();
  const keys = join(mkdtempSync(join(tmpdir(), "inferd-openai-keys-")), "keys.txt");
  writeFileSync(keys, "sk-node-alpha-0123456789 alpha\n");
  await startServer([...MODEL_ARGS, "--api-keys-file", keys], "sk-node-alpha-0123456789");
  const completion = await client.completions.create({ model, prompt: PROMPT, max_tokens: 2, ignore_eos: true });
  assert.equal(completion.usage.completion_tokens, 2);
  assert.equal(await metric("inferd_tenant_requests_total", { tenant: "alpha" }), 2);  // models.list too
  const other = new OpenAI({ baseURL: `http://127.0.0.1:${httpPort}/v1`, apiKey: "sk-wrong", maxRetries: 0 });
  await assert.rejects(other.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }] }),
                       (error) => {
                         assert.ok(error instanceof OpenAI.AuthenticationError, String(error));
                         assert.equal(error.status, 401);
                         assert.equal(error.type, "invalid_request_error");
                         assert.equal(error.code, "invalid_api_key");
                         return true;
                       });
  // No key at all (the client always sends one): OpenAI's answer, code null.
  const missing = await fetch(`http://127.0.0.1:${httpPort}/v1/models`);
  assert.equal(missing.status, 401);
  assert.deepEqual({ ...(await missing.json()).error, message: "" },
                   { message: "", type: "invalid_request_error", param: null, code: null });
  const health = await fetch(`http://127.0.0.1:${httpPort}/health`);
  assert.equal(health.status, 200);
  assert.ok(!log().includes("sk-node-alpha") && !log().includes("sk-wrong"));
});

test("a client that aborts its stream frees its KV blocks", { skip: modelDir && "run with the bundled model" },
     async () => {
  // A model slow enough on a CPU that the stream is still going when the
  // client aborts it (the bundled one finishes 480 tokens in milliseconds).
  await stopServer();
  await startServer(["--model", "dummy:llama-110m"]);
  const cancelledBefore = await metric("inferd_requests_total", { status: "cancelled", protocol: "http" });
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model, prompt: PROMPT, max_tokens: 480, ignore_eos: true, stream: true },
    { signal: controller.signal });
  // The client's stream ends quietly on an abort (or throws its abort error).
  let seen = 0;
  try {
    for await (const chunk of stream) {
      if (++seen === 2) controller.abort();
    }
  } catch (error) {
    assert.ok(error instanceof OpenAI.APIUserAbortError || error.name === "AbortError", String(error));
  }
  assert.ok(seen < 480, `the stream ran to its end (${seen} chunks): the abort came too late`);
  await waitFor("the request cancelled", async () =>
    (await metric("inferd_requests_total", { status: "cancelled", protocol: "http" })) === cancelledBefore + 1);
  await waitFor("the KV blocks back", async () => (await metric("inferd_kv_cache_blocks_used")) === 0);
});

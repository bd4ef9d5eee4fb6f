// Renders every committed chat template over every committed conversation
// with @huggingface/jinja (the reference implementation of Hugging Face's
// chat templates in JavaScript) and writes the results, with their inputs,
// to ../data/expected_renders.json. Run once after changing the cases:
//
//   cd tests/chat_template/reference && npm ci && npm run generate
//
// The C++ tests (tests/server/chat_template_reference_test.cc) read only the
// JSON; they never need node.
import { Template } from "@huggingface/jinja";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const data = join(here, "..", "data");
const shared = process.env.INFERD_SHARED_DIR ?? resolve(here, "../../../../shared");
const jinjaVersion = JSON.parse(readFileSync(join(here, "node_modules/@huggingface/jinja/package.json"))).version;

function specialToken(value) {
  if (typeof value === "string") return value;
  if (value && typeof value.content === "string") return value.content;
  return undefined;
}

// A tokenizer_config.json's template and special tokens, as transformers
// passes them.
function fromTokenizerConfig(name) {
  const config = JSON.parse(readFileSync(join(shared, "models/tokenizers", name, "tokenizer_config.json")));
  const special = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const token = specialToken(config[key]);
    if (token !== undefined) special[key] = token;
  }
  return { source: config.chat_template, special };
}

// content_parts: whether the template iterates over a message's content,
// so list-of-text-parts content reaches it as a list (inferd's
// ChatTemplate::accepts_content_parts); otherwise the parts are joined
// with "\n" first, as inferd's RenderChat does.
const templates = [
  { name: "llama3", tokenizer_dir: "llama3", ...fromTokenizerConfig("llama3"), content_parts: false },
  { name: "qwen3", tokenizer_dir: "qwen3", ...fromTokenizerConfig("qwen3"), content_parts: false },
  {
    name: "chatml",
    file: "templates/chatml.jinja",
    source: readFileSync(join(data, "templates/chatml.jinja"), "utf8"),
    special: { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" },
    content_parts: true,
  },
  {
    name: "mistral",
    file: "templates/mistral.jinja",
    source: readFileSync(join(data, "templates/mistral.jinja"), "utf8"),
    special: { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" },
    content_parts: false,
  },
];

const sys = (content) => ({ role: "system", content });
const user = (content) => ({ role: "user", content });
const assistant = (content) => ({ role: "assistant", content });

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city, in °C",
    parameters: {
      type: "object",
      properties: { city: { type: "string", description: "e.g. \"Zürich\"" }, days: { type: "integer" } },
      required: ["city"],
    },
  },
};

const conversations = [
  { name: "system_user", messages: [sys("You are terse."), user("Hello!")] },
  { name: "system_user_no_generation_prompt", messages: [sys("You are terse."), user("Hello!")], add_generation_prompt: false },
  {
    name: "multi_turn_with_system",
    messages: [sys("Be kind."), user("Hi"), assistant("Hello, how can I help?"), user("Tell me a joke.")],
  },
  {
    name: "multi_turn_without_system",
    messages: [user("What is 2+2?"), assistant("4"), user("And 3+3?"), assistant("6"), user("Thanks")],
  },
  { name: "ends_with_assistant", messages: [user("Ping"), assistant("Pong")], add_generation_prompt: false },
  { name: "empty_system", messages: [sys(""), user("Hi there")] },
  { name: "single_user", messages: [user("Once upon a time")] },
  { name: "unicode", messages: [sys("Réponds en français 🇫🇷"), user("Grüße 👋 — 你好，世界！ مرحبا e\u0301")] },
  { name: "whitespace", messages: [user("  padded with spaces \n\n"), assistant("Fine."), user("\ttabbed\t")] },
  {
    name: "text_parts",
    messages: [
      sys("Answer briefly."),
      { role: "user", content: [{ type: "text", text: "First part." }, { type: "text", text: "Second part." }] },
    ],
  },
  {
    name: "special_text",
    messages: [user("Quotes ' \" and braces {{ x }} {% if %} <|im_end|> [INST] back\\slash")],
  },
  {
    name: "thinking",
    messages: [
      user("Greet me."),
      assistant("<think>\nThe user wants a greeting.\n</think>\n\nHello!"),
      user("Again, shorter."),
    ],
  },
  { name: "with_tools", messages: [sys("Use tools."), user("Weather in Zürich?")], tools: [weatherTool] },
  { name: "tool_role", messages: [user("Weather?"), assistant("Calling the tool."), { role: "tool", content: "{\"temp\": 21}" }] },
  { name: "consecutive_users", messages: [user("one"), user("two")] },
  { name: "assistant_first", messages: [assistant("I speak first."), user("ok")] },
  {
    name: "long_conversation",
    messages: Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? user(`question ${i / 2 + 1}`) : assistant(`answer ${(i + 1) / 2}`))),
  },
];

function flattenParts(messages, contentParts) {
  if (contentParts) return messages;
  return messages.map((m) =>
    Array.isArray(m.content) ? { ...m, content: m.content.filter((p) => p.type === "text").map((p) => p.text).join("\n") } : m
  );
}

const renders = [];
for (const template of templates) {
  const parsed = new Template(template.source);
  for (const conversation of conversations) {
    const context = {
      messages: flattenParts(conversation.messages, template.content_parts),
      add_generation_prompt: conversation.add_generation_prompt ?? true,
      tools: conversation.tools ?? null,
      ...template.special,
    };
    const entry = { template: template.name, conversation: conversation.name };
    try {
      entry.text = parsed.render(context);
    } catch (error) {
      entry.error = String(error.message);
    }
    renders.push(entry);
  }
}

// The language features, one template over two contexts.
const features = [];
const featuresSource = readFileSync(join(data, "templates/features.jinja"), "utf8");
const featureContexts = [
  {
    name: "three_messages",
    context: {
      messages: [sys("S"), user("hello there"), assistant("hi")],
      settings: { name: "inferd", count: 3, flag: true, nothing: null, nested: { inner: "deep", list: [1, "two"] } },
      tools: [weatherTool],
    },
  },
  {
    name: "one_message",
    context: {
      messages: [user("x")],
      settings: { name: "other", count: 1, flag: false, nothing: null, nested: { inner: "", list: [] } },
      tools: [],
    },
  },
];
for (const { name, context } of featureContexts) {
  features.push({ name, context, text: new Template(featuresSource).render(context) });
}

const out = {
  generator: `tests/chat_template/reference/generate_expected.mjs with @huggingface/jinja ${jinjaVersion}`,
  templates: templates.map(({ name, tokenizer_dir, file, special, content_parts }) => ({
    name,
    ...(tokenizer_dir ? { tokenizer_dir } : { file }),
    special_tokens: special,
    content_parts,
  })),
  conversations,
  renders,
  features_template: "templates/features.jinja",
  features,
};
writeFileSync(join(data, "expected_renders.json"), JSON.stringify(out, null, 1) + "\n");
console.log(`wrote ${renders.length} chat renders (${renders.filter((r) => r.error).length} errors) and ${features.length} feature renders`);

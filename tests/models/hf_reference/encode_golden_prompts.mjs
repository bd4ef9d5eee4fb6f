// Encodes every golden prompt with Hugging Face's JS tokenizers
// (@huggingface/tokenizers, pinned in package-lock.json) using the
// tokenizer.json that tests/models/export_stories260k.py derives from
// tok512's scores, and writes what it finds: the ids (BOS first, from the
// tokenizer's own post-processor), whether they equal the golden prompt_ids,
// and the decode of the golden output_ids. Run once; its output is
// committed as stories260K_hf_tokenizer_reference.json.
//   node encode_golden_prompts.mjs EXPORTED_HF_DIR GOLDEN_JSONL > OUT.json
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, goldenPath] = process.argv.slice(2);
const tokenizerJson = JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8"));
const tokenizerConfig = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);

const results = [];
for (const line of readFileSync(goldenPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const golden = JSON.parse(line);
  const ids = tokenizer.encode(golden.prompt).ids;
  results.push({
    prompt: golden.prompt,
    ids,
    equals_golden_prompt_ids: JSON.stringify(ids) === JSON.stringify(golden.prompt_ids),
    output_text: tokenizer.decode(golden.output_ids, { skip_special_tokens: true }),
  });
}
// More text than the five prompts, to compare the derived merges with
// tok512's score-ordered BPE beyond them (bytes outside the vocabulary,
// whitespace runs, punctuation, newlines).
const extra = [
  "Hello world", "  two leading spaces", "trailing space ", "a\nnew line\n\nand two",
  "The little dog's ball was red, blue and green!", "Tom said: \"Let's go.\"", "1234567890",
  "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e", "emoji \ud83d\ude00 here", "tabs\tand\ttabs",
  "She was very happy. They played all day.", "unbelievable antidisestablishmentarianism",
];
const extraResults = extra.map((text) => ({ text, ids: tokenizer.encode(text).ids }));
const pkg = JSON.parse(readFileSync(new URL("./node_modules/@huggingface/tokenizers/package.json", import.meta.url)));
console.log(JSON.stringify({ reference: `@huggingface/tokenizers ${pkg.version}`, prompts: results, extra: extraResults }, null, 1));

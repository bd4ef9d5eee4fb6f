// Writes the reference encodings the tokenizer tests compare against, with
// Hugging Face's own JS port (@huggingface/tokenizers, pinned in
// package-lock.json). Run once, commit the output:
//   cd tests/tokenizer_reference && npm ci && node generate.mjs
// Reads ../../../shared/models/tokenizers/<name>/ (or $INFERD_SHARED_DIR).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = process.env.INFERD_SHARED_DIR ?? path.join(here, '../../../shared');
const corpus = JSON.parse(fs.readFileSync(path.join(here, 'corpus.json'), 'utf8'));

// variants.json: real tokenizers with some stages swapped for layouts the
// three files do not use (the C++ test applies the same overrides).
const variants = JSON.parse(fs.readFileSync(path.join(here, 'variants.json'), 'utf8'));
const names = ['llama3', 'qwen3', 'spm-bpe-32k', ...variants.map((v) => v.name)];

for (const name of names) {
  const variant = variants.find((v) => v.name === name);
  const dir = path.join(shared, 'models/tokenizers', variant ? variant.base : name);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  if (variant) Object.assign(json, variant.override);
  const tok = new Tokenizer(json, JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
  const cases = corpus.map((text) => {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const with_special = tok.encode(text, { add_special_tokens: true }).ids;
    // decode() refuses an empty list; the empty text decodes to "".
    const decoded = ids.length === 0 ? '' : tok.decode(ids, { skip_special_tokens: true });
    return { text, ids, ids_with_special_tokens: with_special, decoded_skip_special: decoded };
  });
  const out = { tokenizer: name, generator: '@huggingface/tokenizers ' +
      JSON.parse(fs.readFileSync(path.join(here, 'node_modules/@huggingface/tokenizers/package.json'))).version,
    cases };
  fs.writeFileSync(path.join(here, 'expected', `${name}.json`), JSON.stringify(out, null, 1) + '\n');
  console.log(`${name}: ${cases.length} cases`);
}

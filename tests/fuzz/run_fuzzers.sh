#!/usr/bin/env bash
# run_fuzzers.sh BUILD_DIR SECONDS [TARGET...]: runs each libFuzzer target
# for SECONDS over a copy of its seed corpus (tests/fuzz/corpus/<target>/;
# what it learns stays in BUILD_DIR/corpus/, the repository is untouched).
# A crash, leak, sanitizer report or timeout fails the run; its input is
# left in BUILD_DIR/artifacts/<target>/ (add it to the seed corpus once
# fixed).
set -euo pipefail
build=$1
seconds=$2
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(safetensors_fuzzer gguf_fuzzer llama2c_fuzzer hf_tokenizer_fuzzer server_config_fuzzer generate_request_fuzzer)
fi
failed=()
for target in "${targets[@]}"; do
  work="$build/corpus/$target"
  artifacts="$build/artifacts/$target"
  mkdir -p "$work" "$artifacts"
  echo "== $target: ${seconds}s"
  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$build/$target" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$work" "$here/corpus/$target" 2>"$build/$target.log"; then
    tail -n 60 "$build/$target.log"
    failed+=("$target")
  else
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$build/$target.log" | tail -n 2 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, nothing found"

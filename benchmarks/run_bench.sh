#!/usr/bin/env bash
# `make bench`: builds inferd, inferd-bench and forward_benchmark, measures
# one engine forward step, then serves dummy:llama-110m on the CPU and runs a
# fixed load scenario against it. The numbers, the exact commands and the
# git commit replace the "make bench" section of benchmarks/RESULTS.md.
#
# Sized for a 2-core machine (about two and a half minutes once built; the
# CPU backend decodes ~100-400 tokens/s there): 128-token prompts and
# outputs, 16 requests at concurrency 1 and 64 at concurrency 16 (fewer at
# concurrency 1 than a GPU run would use: each takes ~2.5 s).
# Override with BENCH_REQUESTS_C1 / BENCH_REQUESTS_C16; BUILD_DIR and JOBS as
# in the Makefile.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
MODEL=dummy:llama-110m
INPUT_LEN=128
OUTPUT_LEN=128
REQUESTS_C1=${BENCH_REQUESTS_C1:-16}
REQUESTS_C16=${BENCH_REQUESTS_C16:-64}
RESULTS=benchmarks/RESULTS.md
BEGIN_MARK='<!-- BEGIN make bench (written by benchmarks/run_bench.sh) -->'
END_MARK='<!-- END make bench -->'

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build ($BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" --target inferd inferd-bench forward_benchmark

echo "== engine: one forward step"
forward_cmd="$BUILD_DIR/benchmarks/forward_benchmark"
$forward_cmd | tee "$work/forward.txt"

echo "== server: $MODEL on the CPU"
server_cmd="$BUILD_DIR/inferd serve --model $MODEL --backend cpu --host 127.0.0.1 --port 0 --metrics-port 0 --http-port 0"
$server_cmd >"$work/server.log" 2>&1 &
server_pid=$!
port="" metrics_url=""
for _ in $(seq 200); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log" | head -1)
  metrics_url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/metrics' "$work/server.log" | head -1 || true)
  [[ -n "$port" && -n "$metrics_url" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$port" || -z "$metrics_url" ]]; then
  echo "the server did not log its ports; log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

# One scenario: its name, then inferd-bench flags. --ready-timeout waits out
# the model load (generated weights take a few seconds).
bench_cmds=()
run_scenario() {
  local name=$1
  shift
  local cmd="$BUILD_DIR/inferd-bench --target 127.0.0.1:$port --scrape-metrics $metrics_url --ready-timeout 120 $*"
  echo "== load: $name"
  echo "$cmd"
  $cmd --output-json "$work/$name.json" | tee "$work/$name.txt"
  bench_cmds+=("$cmd")
}
# A seed per scenario: the same seed would resend the same prompts, and the
# prefix cache would serve their prefill. One warmup request pages the
# weights in before anything is measured.
lengths="--input-len $INPUT_LEN --output-len $OUTPUT_LEN"
run_scenario c1 --concurrency 1 --num-requests "$REQUESTS_C1" $lengths --seed 1 --warmup 1
run_scenario c16 --concurrency 16 --num-requests "$REQUESTS_C16" $lengths --seed 2

# A value from inferd-bench's table ("Label:   value").
field() { sed -n "s/^$2:  *\(.*\)$/\1/p" "$work/$1.txt" | head -1; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then commit="$commit (with uncommitted changes)"; fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)

section="$work/section.md"
{
  echo "$BEGIN_MARK"
  echo "## make bench"
  echo
  echo "Commit $commit, $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) CPUs (${cpu:-unknown CPU}). Model $MODEL"
  echo "(generated weights, fp32) on the CPU backend; server defaults otherwise. Machine shared with"
  echo "other work, so treat differences under ~20% as noise."
  echo
  echo "### Engine only: one decode step (forward pass, no scheduler or server)"
  echo
  echo "Command: \`$forward_cmd\` (context 128 tokens per sequence)"
  echo
  echo '```'
  grep -E '^(Benchmark|BM_|-)' "$work/forward.txt"
  echo '```'
  echo
  echo "### Serving: inferd-bench over gRPC, $INPUT_LEN-token prompts, $OUTPUT_LEN-token outputs"
  echo
  echo "Server: \`$server_cmd\`"
  echo
  echo "| scenario | requests ok/failed | req/s | output tok/s | mean TTFT ms | mean TPOT ms | p99 E2E ms | server mean batch |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for name in c1 c16; do
    echo "| concurrency ${name#c} | $(field $name 'Successful requests')/$(field $name 'Failed requests') \
| $(field $name 'Request throughput (req\/s)') | $(field $name 'Output token throughput (tok\/s)') \
| $(field $name 'Mean TTFT (ms)') | $(field $name 'Mean TPOT (ms)') | $(field $name 'P99 E2E (ms)') \
| $(field $name 'Mean batch size (seqs\/step)') |"
  done
  i=0
  for name in c1 c16; do
    echo
    echo "Command: \`${bench_cmds[$i]}\` (ports are picked at start)"
    echo
    echo '```'
    cat "$work/$name.txt"
    echo '```'
    i=$((i + 1))
  done
  echo "$END_MARK"
} >"$section"

# Replace our section, keep everything else in the file.
if [[ -f "$RESULTS" ]] && grep -qF "$BEGIN_MARK" "$RESULTS"; then
  awk -v begin="$BEGIN_MARK" -v end="$END_MARK" -v section="$section" '
    $0 == begin { while ((getline line < section) > 0) print line; skipping = 1; next }
    $0 == end { skipping = 0; next }
    !skipping { print }' "$RESULTS" >"$work/results.md"
  cat "$work/results.md" >"$RESULTS"
else
  [[ -f "$RESULTS" ]] || printf '# Benchmark results\n\nEvery number here comes from the command written next to it.\n' >"$RESULTS"
  { echo; cat "$section"; } >>"$RESULTS"
fi
echo "== wrote $RESULTS"

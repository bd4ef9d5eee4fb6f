#!/usr/bin/env bash
# `make bench-protocols`: the cost of the OpenAI HTTP front against gRPC.
# Serves dummy:llama-110m on the CPU and runs the same load (closed loop, 8
# streams, the same synthetic prompts) through inferd-bench twice per
# protocol, alternating gRPC and --protocol openai, so that drift in a shared
# machine's load hits both alike. Prefix caching is off: each round sends its
# prompts twice (once per protocol), and the second must not find them cached. Replaces the "protocols" section of
# benchmarks/RESULTS.md with the figures, the commands and the commit.
# About a minute once built. BUILD_DIR and JOBS as in the Makefile.
set -euo pipefail

cd "$(dirname "$0")/.."
source benchmarks/lib.sh
MODEL=dummy:llama-110m
REQUESTS=${BENCH_PROTOCOL_REQUESTS:-16}
BEGIN_MARK='<!-- BEGIN make bench-protocols (written by benchmarks/run_protocol_bench.sh) -->'
END_MARK='<!-- END make bench-protocols -->'

bench_build inferd inferd-bench

server_cmd="$BUILD_DIR/inferd serve --model $MODEL --backend cpu --host 127.0.0.1 --port 0 --metrics-port -1 --http-port 0 --no-prefix-caching"
bench_start_server "$work/server.log" $server_cmd

common="--target 127.0.0.1:$port --ready-timeout 120 --concurrency 8 --num-requests $REQUESTS --input-len 128 --output-len 128 --warmup 2"
declare -A cmds
for round in 1 2; do
  for protocol in grpc openai; do
    cmd="$BUILD_DIR/inferd-bench $common --seed $round --protocol $protocol --http-target 127.0.0.1:$http_port"
    echo "== $protocol, round $round: $cmd"
    $cmd | tee "$work/$protocol-$round.txt"
    cmds[$protocol]=$cmd
  done
done

field() { bench_field "$work/$1.txt" "$2"; }
commit=$(bench_commit)

section="$work/section.md"
{
  echo "$BEGIN_MARK"
  echo "## make bench-protocols: gRPC vs the OpenAI HTTP API at 8 streams"
  echo
  echo "Commit $commit, $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) CPUs. Server: \`$server_cmd\`."
  echo "Closed loop, 8 streams, 128-token prompts and outputs, $REQUESTS measured requests per run, the"
  echo "rounds alternating; round N of both protocols sends the same prompts (--seed N), and prefix"
  echo "caching is off so that both compute them. Machine shared with other work: compare the rounds"
  echo "with each other before the protocols."
  echo
  echo "| protocol | round | ok/failed | output tok/s | mean TTFT ms | p50 TTFT ms | mean TPOT ms | mean E2E ms |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for round in 1 2; do
    for protocol in grpc openai; do
      name="$protocol-$round"
      echo "| $protocol | $round | $(field $name 'Successful requests')/$(field $name 'Failed requests') \
| $(field $name 'Output token throughput (tok\/s)') | $(field $name 'Mean TTFT (ms)') | $(field $name 'P50 TTFT (ms)') \
| $(field $name 'Mean TPOT (ms)') | $(field $name 'Mean E2E (ms)') |"
    done
  done
  echo
  echo "Commands (ports are picked at start; --seed 1 and 2 for the rounds):"
  echo
  echo "- gRPC: \`${cmds[grpc]}\`"
  echo "- HTTP: \`${cmds[openai]}\`"
  echo "$END_MARK"
} >"$section"

bench_write_section "$BEGIN_MARK" "$END_MARK" "$section"
echo "== wrote the protocols section of $RESULTS"

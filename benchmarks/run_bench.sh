#!/usr/bin/env bash
# `make bench`: the CPU figures of issue 11, per weight dtype, written to the
# "make bench" section of benchmarks/RESULTS.md (benchmarks/bench_report.py
# lays it out):
#   1. memory read bandwidth (benchmarks/membw): DRAM, and buffers the size
#      of each dtype's weights: the roof every figure is read against;
#   2. the engine alone: one decode step at batch 1, 8 and 32
#      (forward_benchmark --dtype=X);
#   3. the server (`inferd serve --dtype X` on dummy:llama-110m) under
#      inferd-bench: 128 random token ids in, 128 tokens out with EOS ignored,
#      streamed over gRPC, at 1 stream and at 8 concurrent streams; TTFT,
#      throughput, and the served decode step (/metrics) against the bare
#      one: then, with the same server up, BENCH_PAIRS rounds of the bare
#      step followed at once by a short served run at 1 and at 8 streams,
#      so that each served/bare ratio compares figures taken seconds apart,
#      and by the same runs as unary Generate calls (the whole output in one
#      reply): what the stream's per-token writes cost, apart from the rest;
#   4. each served figure against issue 11's llama-server bars, PASS or MISS,
#      with the DRAM bandwidth read just before and just after that dtype's
#      runs: the host's bandwidth drifts by 2x within minutes (26-60 GB/s
#      on two threads in one hour), and a decode step at batch 1 reads its
#      weights at whatever the host gives at the time.
#
# About 8 minutes on two cores once built (longer while other work shares
# them). Knobs (environment):
#   BENCH_DTYPES        dtypes to measure (default: float32 float16 bfloat16 q8_0)
#   BENCH_REQUESTS_C1   measured requests at 1 stream, per dtype (default 6)
#   BENCH_REQUESTS_C8   measured requests at 8 streams, per dtype (default 32)
#   BENCH_MEMBW_SECONDS seconds per bandwidth trial (default 0.5)
#   BENCH_PAIRS         paired bare/served rounds per dtype (default 3; 2 and
#                       8 requests at 1 and 8 streams each, streamed, then unary)
#   BUILD_DIR, JOBS     as in the Makefile
# A dtype the server refuses is reported as not run; the rest still runs.
set -euo pipefail

cd "$(dirname "$0")/.."
source benchmarks/lib.sh
MODEL=dummy:llama-110m
DTYPES=(${BENCH_DTYPES:-float32 float16 bfloat16 q8_0})
REQUESTS_C1=${BENCH_REQUESTS_C1:-6}
REQUESTS_C8=${BENCH_REQUESTS_C8:-32}
MEMBW_SECONDS=${BENCH_MEMBW_SECONDS:-0.5}
PAIRS=${BENCH_PAIRS:-3}
BEGIN_MARK='<!-- BEGIN make bench (written by benchmarks/run_bench.sh) -->'
END_MARK='<!-- END make bench -->'

start_s=$SECONDS
stage=0
stages=$((2 + 2 * ${#DTYPES[@]}))
progress() {
  stage=$((stage + 1))
  echo "== [$stage/$stages, $((SECONDS - start_s)) s] $*"
}

progress "build ($BUILD_DIR)"
bench_build inferd inferd-bench forward_benchmark membw
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# Bandwidth: DRAM (a buffer 4x the L3 cache, at least 1 GiB), and buffers
# the size of each dtype's weights (they may fit in a large L3).
progress "memory bandwidth"
l3_bytes=$(cat /sys/devices/system/cpu/cpu0/cache/index3/size 2>/dev/null | numfmt --from=iec 2>/dev/null || echo 0)
l3_mib=$((l3_bytes / 1048576))
dram_mib=$((4 * l3_mib > 1024 ? 4 * l3_mib : 1024))
weight_sizes=$(python3 -c "
import sys; sys.path.insert(0, 'benchmarks'); import bench_report as b
print(','.join(str(s) for s in sorted({round(b.weight_mb(d) * 1e6 / 2**20) for d in sys.argv[1:]}, reverse=True)))
" "${DTYPES[@]}")
membw_cmd="$BUILD_DIR/benchmarks/membw --sizes-mib=$dram_mib,$weight_sizes --threads=1,2 --seconds=$MEMBW_SECONDS"
$membw_cmd | tee "$work/membw.txt"

# forward_benchmark takes --dtype once the CPU backend converts weights; a
# build without it runs its one dtype (float32), reported as such.
forward_bin="$BUILD_DIR/benchmarks/forward_benchmark"
forward_note=""
if "$forward_bin" --dtype=float32 --benchmark_list_tests >/dev/null 2>&1; then
  forward_cmd="$forward_bin --dtype=X"
else
  forward_cmd="$forward_bin"
  forward_note="This forward_benchmark has no --dtype option: only its own dtype (float32) was measured."
fi

# The server's figures for one dtype: one server, a warmup request, then 1
# stream and 8 streams; a seed per scenario so that no prompt is in the
# prefix cache already.
serve_dtype() {
  local dtype=$1
  local cmd=($BUILD_DIR/inferd serve --model $MODEL --backend cpu --dtype $dtype --host 127.0.0.1 --port 0
    --metrics-port 0 --http-port -1)
  server_cmd="${cmd[*]}"
  server_cmd=${server_cmd//--dtype $dtype/--dtype X}
  if ! bench_start_server "$work/$dtype-server.log" "${cmd[@]}" 2>"$work/$dtype-server.err" ||
     ! bench_wait_serving "$work/$dtype-server.log" 2>"$work/$dtype-server.err"; then
    echo "   the server did not serve at --dtype $dtype: $(tail -1 "$work/$dtype-server.err")"
    return 0
  fi
  rm -f "$work/$dtype-server.err"
  local common="--target 127.0.0.1:$port --scrape-metrics $metrics_url --ready-timeout 60 --input-len 128 --output-len 128"
  bench_cmd="$BUILD_DIR/inferd-bench --target 127.0.0.1:PORT --scrape-metrics URL --input-len 128 --output-len 128"
  local streams name requests extra
  for streams in 1 8; do
    name=c$streams
    if [[ $streams == 1 ]]; then requests=$REQUESTS_C1 extra="--warmup 1 --seed 1"; else requests=$REQUESTS_C8 extra="--seed 2"; fi
    echo "   $streams stream(s), $requests requests"
    if ! "$BUILD_DIR/inferd-bench" $common --concurrency $streams --num-requests "$requests" $extra \
        --output-json "$work/$dtype-$name.json" >"$work/$dtype-$name.txt"; then
      rm -f "$work/$dtype-$name.json"
      if ! kill -0 "$server_pid" 2>/dev/null; then
        { echo "the server exited; its log ends:"; tail -5 "$work/$dtype-server.log"; } >"$work/$dtype-server.err"
        echo "   the server exited at --dtype $dtype: $(tail -1 "$work/$dtype-server.log")"
        server_pid=""
        return 0
      fi
      echo "   inferd-bench failed at --dtype $dtype, $streams stream(s); its output ends:"
      tail -5 "$work/$dtype-$name.txt" | sed 's/^/   /'
      continue
    fi
    grep -E '^(Output token throughput|Mean TTFT|Mean decode-only step)' "$work/$dtype-$name.txt" | sed 's/^/   /'
  done
  # This machine's speed drifts by 10-40% within minutes (its memory
  # bandwidth by up to 2x), more than the served step's overhead that the
  # goal bounds; so the bare step and a short served run alternate, with
  # this server up and idle while the bare step runs.
  if [[ -z "$forward_note" ]]; then
    local pair
    for ((pair = 1; pair <= PAIRS; pair++)); do
      "$forward_bin" --dtype="$dtype" --benchmark_filter='BM_DecodeStep/.*/(1|8)/' \
        --benchmark_out="$work/pair$pair-$dtype-bare.json" --benchmark_out_format=json >/dev/null 2>&1 || true
      # Streamed (c1, c8), then the same load as unary calls (u1, u8), with
      # new prompts, as none may come from the prefix cache.
      local kind protocol seed_base
      for kind in c u; do
        if [[ $kind == c ]]; then protocol=grpc seed_base=0; else protocol=grpc-unary seed_base=100; fi
        for streams in 1 8; do
          "$BUILD_DIR/inferd-bench" $common --protocol $protocol --concurrency $streams \
            --num-requests $((streams == 1 ? 2 : 8)) --seed $((seed_base + 10 * streams + pair)) \
            --output-json "$work/pair$pair-$dtype-$kind$streams.json" >/dev/null 2>&1 || true
        done
      done
      echo "   pair $pair/$PAIRS: $(python3 benchmarks/bench_report.py --pair "$work" "$dtype" "$pair")"
    done
  fi
  bench_stop_server
}

# The bandwidth beside one dtype's runs: two threads on the DRAM buffer,
# short; membw-<dtype>-<when>.txt.
alongside_cmd="$BUILD_DIR/benchmarks/membw --sizes-mib=$dram_mib --threads=2 --seconds=0.3"
membw_alongside() {
  $alongside_cmd >"$work/membw-$1-$2.txt"
  echo "   bandwidth $2: $(grep -o 'gbps_cpu=[0-9.]*' "$work/membw-$1-$2.txt" | cut -d= -f2) GB/s (2 threads)"
}

server_cmd="" bench_cmd=""
for dtype in "${DTYPES[@]}"; do
  progress "engine only, $dtype: forward_benchmark (batch 1, 8, 32)"
  membw_alongside "$dtype" before
  if [[ -z "$forward_note" ]]; then
    "$forward_bin" --dtype="$dtype" --benchmark_out="$work/forward-$dtype.json" --benchmark_out_format=json \
      | tee "$work/forward-$dtype.txt" || echo "   forward_benchmark failed at --dtype=$dtype"
  elif [[ "$dtype" == float32 ]]; then
    "$forward_bin" --benchmark_out="$work/forward-$dtype.json" --benchmark_out_format=json \
      | tee "$work/forward-$dtype.txt"
  else
    echo "   skipped: $forward_note"
  fi
  progress "served, $dtype: 1 stream then 8 streams, then $PAIRS paired rounds of the bare and the served step"
  serve_dtype "$dtype"
  membw_alongside "$dtype" after
done

commit=$(bench_commit)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
python3 - "$work/meta.json" <<EOF
import json, sys
json.dump({
    "begin_mark": """$BEGIN_MARK""", "end_mark": """$END_MARK""",
    "commit": """$commit""", "date": """$(date -u +%Y-%m-%dT%H:%MZ)""", "cpus": $(nproc),
    "cpu": """${cpu:-unknown CPU}""", "l3": """${l3_mib} MiB""",
    "load_before": """$load_before""", "load_after": """$(cut -d' ' -f1-3 /proc/loadavg)""",
    "elapsed": """$((SECONDS - start_s)) s""",
    "dtypes": """${DTYPES[*]}""".split(),
    "membw_cmd": """$membw_cmd""", "membw_dram_mib": $dram_mib, "alongside_cmd": """$alongside_cmd""",
    "forward_cmd": """$forward_cmd""", "forward_note": """$forward_note""",
    "server_cmd": """$server_cmd""", "bench_cmd": """$bench_cmd""",
    "requests_c1": $REQUESTS_C1, "requests_c8": $REQUESTS_C8, "pairs": $PAIRS,
}, open(sys.argv[1], "w"), indent=1)
EOF
python3 benchmarks/bench_report.py "$work" >"$work/section.md"
bench_write_section "$BEGIN_MARK" "$END_MARK" "$work/section.md"
echo "== [$((SECONDS - start_s)) s] wrote $RESULTS"
sed -n '/^### Against llama-server/,/^<details>/p' "$work/section.md" | grep '^|'

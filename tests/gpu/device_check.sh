#!/usr/bin/env bash
# The CUDA backend's whole device check, as one script for a lent NVIDIA H200
# (see the device tool's README, HOPPER.md, METHOD.md and KINDS.md): one
# 15-minute lease settles whether the backend is right and how fast it is.
#
# 1. Here, after building with -DINFERD_CUDA=ON (-DINFERD_CUDA_ARCHITECTURES=90
#    for the H200) the targets inferd, inferd_cuda_plugin, inferd-bench,
#    gpu_benchmark and the cuda_*_test binaries:
#        tests/gpu/device_check.sh bundle [BUILD_DIR]    # default: build
#    copies them into build/gpu-bundle with every shared library they need
#    that the device lacks (gRPC, Protobuf, Abseil, yaml-cpp, prometheus-cpp,
#    spdlog, fmt, ...: everything but glibc, the driver, cuBLAS and cudart) and
#    the golden outputs, packed as build/gpu-bundle.tar.xz (at most 64 MiB;
#    unpacked there on the first run): the one path to carry (the device
#    tool sends the checkout its session started in: a bundle built in
#    another worktree must be copied there first).
#        tests/gpu/device_check.sh --dry-run             # here: every step, its cap
# 2. There, in the repository root, with $OUT set (run timeout_s 600):
#        tests/gpu/device_check.sh
#    finds cuBLAS and cudart (the python3 wheels nvidia-cublas and
#    nvidia-cuda-runtime, or /usr/local/cuda*), prints ldd of every binary and
#    stops at once, naming it, if a library is missing; then the steps, in
#    order of value, each under its own cap and all under one deadline of
#    540 s:
#      1. the kernel and backend tests against the CPU reference;
#      2. compute-sanitizer memcheck, then racecheck, on a quick subset;
#      3. inferd serve --backend cuda on dummy:llama3-8b (bf16), smoke-tested
#         over gRPC by inferd-bench, with /metrics scraped;
#      4. inferd-bench at concurrency 1, 32 and 256;
#      5. the forward benchmark: decode at batch 1/32/256, prefill 512/2048/8192.
#    Logs stream into $OUT as they are written (a killed run still returns
#    them); $OUT/summary.md is the table for benchmarks/RESULTS.md, rewritten
#    after every step.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
BUNDLE=build/gpu-bundle
ARCHIVE=build/gpu-bundle.tar.xz
BUNDLE_LIMIT_BYTES=$((64 * 1024 * 1024))
DEADLINE_S=540
TESTS=(cuda_kernels_test cuda_gemm_test cuda_attention_test cuda_dummy_weights_test cuda_backend_test
       cuda_realistic_test cuda_architectures_test cuda_golden_test)
# Per-step caps in seconds. Their sum stays under DEADLINE_S (checked below),
# so every step gets its turn even if each runs to its cap.
declare -A CAP=(
  [preflight]=15
  [cuda_kernels_test]=30 [cuda_gemm_test]=25 [cuda_attention_test]=45 [cuda_dummy_weights_test]=25
  [cuda_backend_test]=45 [cuda_realistic_test]=55 [cuda_architectures_test]=20 [cuda_golden_test]=15
  [memcheck]=35 [racecheck]=25
  [serve]=80
  [bench_c1]=15 [bench_c32]=20 [bench_c256]=25
  [forward_benchmark]=55
)
STEP_ORDER=(preflight "${TESTS[@]}" memcheck racecheck serve bench_c1 bench_c32 bench_c256 forward_benchmark)
# compute-sanitizer's quick subsets (it slows kernels 10-100x): BINARY:FILTER.
MEMCHECK_RUNS=(
  'cuda_kernels_test:*/bfloat16'
  'cuda_gemm_test:*/bfloat16'
  'cuda_attention_test:*stories260K_shape_bfloat16:*mha_head64_block32_float16:*group12_two_head_chunks_bfloat16'
  'cuda_realistic_test:LogitCandidates.Kernel*'
  'cuda_architectures_test:QkvPrologue*:ConvertWeights*'
)
RACECHECK_RUNS=(
  'cuda_attention_test:*stories260K_shape_bfloat16:*mha_head64_block32_float16'
  'cuda_realistic_test:LogitCandidates.Kernel*'
)
SERVE_MODEL=dummy:llama3-8b

caps_total() {
  local total=0 step
  for step in "${STEP_ORDER[@]}"; do total=$((total + CAP[$step])); done
  echo "$total"
}
if [ "$(caps_total)" -ge "$DEADLINE_S" ]; then
  echo "device_check: the step caps sum to $(caps_total) s, not under the ${DEADLINE_S} s deadline" >&2
  exit 2
fi

# ---------------------------------------------------------------- bundle (here)
# Libraries the device has: glibc's, the driver's, and cuBLAS/cudart (its
# python3 wheels; found at run time). Everything else a binary needs travels.
DEVICE_HAS='/(libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux[^/]*|libcuda|libnvidia-[^/]*|libcublas|libcublasLt|libcudart)\.so'

bundle() {
  local build=${1:-build}
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/shared" || exit 1
  local binaries=() t b
  for t in "${TESTS[@]}"; do binaries+=("$build/tests/gpu/$t"); done
  binaries+=("$build/benchmarks/gpu_benchmark" "$build/inferd" "$build/inferd-bench" "$build/libinferd_cuda.so")
  for b in "${binaries[@]}"; do
    [ -f "$b" ] || { echo "device_check: $b is missing; build it first (-DINFERD_CUDA=ON)" >&2; exit 1; }
    cp "$b" "$BUNDLE/bin/" && strip --strip-unneeded "$BUNDLE/bin/$(basename "$b")"
  done
  ldd "${binaries[@]}" 2>/dev/null | awk '/=> \// {print $3}' | sort -u | grep -vE "$DEVICE_HAS" |
    while read -r lib; do cp -L "$lib" "$BUNDLE/lib/" && strip --strip-unneeded "$BUNDLE/lib/$(basename "$lib")"; done
  # cudart is tiny: a fallback for a device whose wheel is missing, searched last.
  mkdir -p "$BUNDLE/fallback"
  ldd "$build/libinferd_cuda.so" | awk '/libcudart\.so/ {print $3}' | while read -r lib; do cp -L "$lib" "$BUNDLE/fallback/"; done
  if [ -d "$ROOT/../shared/golden" ]; then
    cp -r "$ROOT/../shared/golden" "$BUNDLE/shared/"
  else
    echo "device_check: no ../shared/golden beside the checkout; the golden test will fail there" >&2
  fi
  git -C "$ROOT" rev-parse --short HEAD > "$BUNDLE/commit" 2>/dev/null
  [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] || echo "(with uncommitted changes)" >> "$BUNDLE/commit"
  ls -la "$BUNDLE/lib"
  # Carried as one xz archive: the stripped binaries and libraries take more
  # than the 64 MiB the device tool carries, but compress about 7:1.
  local bytes
  bytes=$(du -sb "$BUNDLE" | cut -f1)
  echo "bundle: $BUNDLE, $((bytes / 1024 / 1024)) MiB; compressing to $ARCHIVE"
  tar -C "$(dirname "$BUNDLE")" -cf - "$(basename "$BUNDLE")" | xz -T0 -6 > "$ARCHIVE" || exit 1
  bytes=$(stat -c %s "$ARCHIVE")
  echo "bundle: $ARCHIVE, $((bytes / 1024 / 1024)) MiB"
  if [ "$bytes" -gt "$BUNDLE_LIMIT_BYTES" ]; then
    echo "device_check: $ARCHIVE is over 64 MiB (the device tool carries at most that)" >&2
    exit 1
  fi
  echo "carry: [\"$ARCHIVE\"]   command: tests/gpu/device_check.sh   timeout_s: 600"
}

# There: the carried archive becomes the bundle (tar with xz, or Python's
# tarfile where xz is missing).
unpack() {
  [ -d "$BUNDLE" ] || [ ! -f "$ARCHIVE" ] && return 0
  tar -C "$(dirname "$BUNDLE")" -xJf "$ARCHIVE" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$ARCHIVE" "$(dirname "$BUNDLE")"
}

if [ "${1:-}" = "bundle" ]; then
  bundle "${2:-build}"
  exit $?
fi
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
unpack || { echo "device_check: cannot unpack $ARCHIVE" >&2; exit 1; }

# ---------------------------------------------------------------- the run (there)
OUT=${OUT:-$ROOT/build-device-check}  # (ignored by git)
mkdir -p "$OUT"
# $OUT gets four files (the device tool returns at most eight): the log of
# everything, streamed as it is written; summary.md; the server's log; the
# benchmark's JSON. Per-step copies, for the summary, live in STEPS.
LOG="$OUT/device_check.log"
SUMMARY="$OUT/summary.md"
STEPS=$(mktemp -d)
: > "$LOG"
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
note() { echo "[device_check $(elapsed)s] $*" | tee -a "$LOG"; }
# A step's timeout: its cap, clipped to what the global deadline leaves.
budget() {
  local left=$((DEADLINE_S - $(elapsed)))
  local cap=${CAP[$1]}
  [ "$left" -lt "$cap" ] && cap=$left
  echo "$cap"
}
# Runs one step's command under its budget, streaming its output to
# the main log in $OUT (and $STEPS/NAME.log); returns its status (124: cut).
run_step() {
  local name=$1
  shift
  local b
  b=$(budget "$name")
  if [ "$DRY_RUN" = 1 ]; then
    note "step $name (cap ${CAP[$name]} s): $*"
    return 0
  fi
  if [ "$b" -le 0 ]; then
    note "step $name skipped: the ${DEADLINE_S} s deadline has passed"
    return 124
  fi
  note "step $name (budget $b s): $*"
  timeout -k 5 "$b" "$@" > >(tee "$STEPS/$name.log" >> "$LOG") 2>&1
  local rc=$?
  note "step $name rc=$rc"
  return $rc
}

BIN=$BUNDLE/bin
[ -d "$BIN" ] || { note "no $BUNDLE: build here and run 'tests/gpu/device_check.sh bundle' first"; exit 1; }
COMMIT=$(cat "$BUNDLE/commit" 2>/dev/null | tr '\n' ' ' || echo unknown)

# Where cuBLAS and cudart live on this machine: the python3 wheels first
# (nvidia-cublas, nvidia-cuda-runtime), then the toolkits.
find_library_dirs() {
  local roots=() py dir
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" > /dev/null 2>&1 || continue
    while read -r dir; do [ -d "$dir/nvidia" ] && roots+=("$dir/nvidia"); done < <(
      "$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null)
  done
  for dir in /usr/local/cuda /usr/local/cuda-* /usr/local/cuda/targets/x86_64-linux /usr/lib/x86_64-linux-gnu; do
    [ -d "$dir" ] && roots+=("$dir")
  done
  printf '%s\n' "${roots[@]}" | awk '!seen[$0]++'
}

preflight() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 || true
  local roots lib path missing=0 dirs=()
  mapfile -t roots < <(find_library_dirs)
  echo "library search roots: ${roots[*]}"
  # The sonames the plugin asks for (libcublas.so.13, ...).
  local wanted
  wanted=$(readelf -d "$BIN/libinferd_cuda.so" 2>/dev/null | sed -n 's/.*Shared library: \[\(libcu[a-zA-Z]*\.so[.0-9]*\)\].*/\1/p' | grep -v '^libcuda\.so')
  [ -n "$wanted" ] || wanted="libcublas.so.13 libcublasLt.so.13 libcudart.so.13"
  for lib in $wanted; do
    path=$(find "${roots[@]}" -maxdepth 4 -name "$lib" 2>/dev/null | head -1)
    if [ -z "$path" ] && [ -f "$BUNDLE/fallback/$lib" ]; then path="$ROOT/$BUNDLE/fallback/$lib"; fi
    if [ -z "$path" ]; then echo "MISSING: $lib (searched ${roots[*]})"; missing=1; continue; fi
    echo "found $lib: $path"
    dirs+=("$(dirname "$(readlink -f "$path")")")
  done
  LIB_PATH="$ROOT/$BUNDLE/lib:$(printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++' | paste -sd:)"
  echo "LD_LIBRARY_PATH=$LIB_PATH"
  local b
  for b in "$BIN"/*; do
    echo "== ldd $b"
    LD_LIBRARY_PATH="$LIB_PATH" ldd "$b" 2>&1
    if LD_LIBRARY_PATH="$LIB_PATH" ldd "$b" 2>&1 | grep -q 'not found'; then
      echo "MISSING for $(basename "$b"): $(LD_LIBRARY_PATH="$LIB_PATH" ldd "$b" | awk '/not found/ {print $1}' | paste -sd' ')"
      missing=1
    fi
  done
  echo "$LIB_PATH" > "$STEPS/lib_path"
  return $missing
}

# ---- the summary, rewritten after every step
declare -A RESULT=()
write_summary() {
  {
    echo "## GPU device check (tests/gpu/device_check.sh)"
    echo
    echo "Commit ${COMMIT}, $(date -u +%Y-%m-%dT%H:%MZ); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo 'no GPU')."
    echo "Elapsed $(elapsed) s of the ${DEADLINE_S} s deadline. Roofline: 4.3 TB/s copy, 790 TFLOP/s bf16 (device KINDS.md)."
    echo
    echo "| step | cap s | result |"
    echo "| --- | --- | --- |"
    local step
    for step in "${STEP_ORDER[@]}"; do echo "| $step | ${CAP[$step]} | ${RESULT[$step]:-not run} |"; done
    if [ -f "$STEPS/forward_benchmark.log" ]; then
      echo
      echo "### Forward benchmark ($SERVE_MODEL, bf16, context 1024)"
      echo
      echo '```'
      sed -n '/median of timed runs/,$p' "$STEPS/forward_benchmark.log"
      echo '```'
    fi
    for c in 1 32 256; do
      [ -f "$STEPS/bench_c$c.log" ] || continue
      echo
      echo "### inferd-bench, concurrency $c"
      echo
      echo '```'
      grep -E '^(Successful|Failed|Request throughput|Output token throughput|Mean TTFT|Mean TPOT|P99 E2E|Mean batch)' \
        "$STEPS/bench_c$c.log"
      echo '```'
    done
  } > "$SUMMARY"
}

# What a gtest log says in one cell.
gtest_result() {
  local log=$1 rc=$2
  local passed failed skipped
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  failed=$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$log")
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  local cell="rc=$rc, ${passed:-0} passed, ${skipped:-0} skipped, ${failed} failed"
  [ "$rc" = 124 ] && cell="$cell (cut at its cap)"
  [ "$failed" -gt 0 ] && cell="$cell: $(grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sed 's/\[  FAILED  \] //; s/ (.*//' | sort -u | head -5 | paste -sd' ')"
  echo "$cell"
}

note "budget: ${DEADLINE_S} s deadline; caps sum to $(caps_total) s"
if [ "$DRY_RUN" = 1 ]; then
  for step in "${STEP_ORDER[@]}"; do printf '  %-24s cap %3d s\n' "$step" "${CAP[$step]}" | tee -a "$LOG"; done
fi

# ---- preflight: libraries, ldd of every binary; a missing library ends the run here
if [ "$DRY_RUN" = 1 ]; then note "step preflight (cap ${CAP[preflight]} s): library discovery and ldd"; fi
timeout "${CAP[preflight]}" bash -c "$(declare -f find_library_dirs preflight); ROOT='$ROOT' BUNDLE='$BUNDLE' BIN='$BIN' OUT='$OUT' STEPS='$STEPS'; preflight" \
  > >(tee "$STEPS/preflight.log" >> "$LOG") 2>&1
PRE_RC=$?
sleep 0.2  # let tee drain
if [ $PRE_RC -ne 0 ]; then
  RESULT[preflight]="FAILED: $(grep -E '^MISSING' "$STEPS/preflight.log" | paste -sd' ')"
  note "preflight failed: $(grep -E '^MISSING' "$STEPS/preflight.log" | paste -sd' ')"
  write_summary
  cat "$SUMMARY"
  exit 1
fi
export LD_LIBRARY_PATH
LD_LIBRARY_PATH=$(cat "$STEPS/lib_path")
RESULT[preflight]="ok: $(grep -E '^found' "$STEPS/preflight.log" | sed 's/^found //; s/: .*\/nvidia\//: wheel nvidia\//' | paste -sd';')"
note "libraries found; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
export INFERD_SOURCE_DIR="$ROOT" INFERD_SHARED_DIR="$ROOT/$BUNDLE/shared" INFERD_CUDA_PLUGIN="$ROOT/$BIN/libinferd_cuda.so"
write_summary

# ---- 1. kernel and backend tests against the CPU reference
FAILED=0
for t in "${TESTS[@]}"; do
  run_step "$t" "$BIN/$t" --gtest_color=no
  rc=$?
  [ "$DRY_RUN" = 1 ] && continue
  RESULT[$t]=$(gtest_result "$STEPS/$t.log" $rc)
  [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
  write_summary
done

# ---- 2. compute-sanitizer on a quick subset
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$SANITIZER" ] || note "compute-sanitizer is not on this machine (PATH, /usr/local/cuda*/bin): steps memcheck and racecheck fail"
for tool in memcheck racecheck; do
  runs=("${MEMCHECK_RUNS[@]}")
  [ $tool = racecheck ] && runs=("${RACECHECK_RUNS[@]}")
  script="rc=0"
  for r in "${runs[@]}"; do
    script+="; ${SANITIZER:-compute-sanitizer} --tool $tool --error-exitcode 3 $BIN/${r%%:*} --gtest_color=no \
--gtest_filter='${r#*:}' || rc=\$?"
  done
  run_step $tool bash -c "$script; exit \$rc"
  rc=$?
  [ "$DRY_RUN" = 1 ] && continue
  RESULT[$tool]="rc=$rc: $(grep -E 'ERROR SUMMARY' "$STEPS/$tool.log" | sort | uniq -c | paste -sd' ')"
  [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
  write_summary
done

# ---- 3. the server on a Llama-3-8B-shape model, smoke-tested over gRPC and /metrics
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; }
trap cleanup EXIT
SERVE_CMD="$BIN/inferd serve --model $SERVE_MODEL --backend cuda --dtype bfloat16 --host 127.0.0.1 --port 0 \
--metrics-port 0 --max-num-seqs 256 --max-num-batched-tokens 8192 --drain-timeout-seconds 1"
# The server runs in this shell's background (it serves step 4 too); the
# wait for its ports and the smoke client share the step's budget.
serve_and_smoke() {
  local until=$(($(elapsed) + $1))
  $SERVE_CMD > "$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  # The model loads after the ports open; "serving" says it is up.
  while kill -0 "$SERVER_PID" 2>/dev/null && [ "$(elapsed)" -lt "$until" ]; do
    grep -q ' serving ' "$OUT/server.log" && break
    sleep 0.5
  done
  if ! grep -q ' serving ' "$OUT/server.log"; then
    echo "the server ended or did not come up within the step's budget:"
    tail -30 "$OUT/server.log"
    return 1
  fi
  local port metrics
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$OUT/server.log" | head -1)
  metrics=$(grep -o 'http://127\.0\.0\.1:[0-9]*/metrics' "$OUT/server.log" | head -1)
  local left=$((until - $(elapsed)))
  [ "$left" -gt 5 ] || return 124
  timeout -k 5 "$left" "$BIN/inferd-bench" --target "127.0.0.1:$port" --scrape-metrics "$metrics" \
    --ready-timeout 10 --concurrency 2 --num-requests 4 --input-len 32 --output-len 16 --seed 9 || return $?
  grep -iE 'cuda|graph|kv cache|memory' "$OUT/server.log" | head -20
  # Without the bundle's libraries: the device's python3 has its own.
  env -u LD_LIBRARY_PATH python3 -c "import sys, urllib.request; t = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(); \
print('\n'.join(l for l in t.splitlines() if l.startswith(('inferd_', 'grpc_server_')))[:3000]); \
sys.exit(0 if 'inferd_' in t else 1)" "$metrics" || return $?
  echo "$port $metrics" > "$STEPS/server"
}
if [ "$DRY_RUN" = 1 ]; then
  run_step serve "$SERVE_CMD; inferd-bench --concurrency 2 --num-requests 4; GET /metrics"
else
  b=$(budget serve)
  note "step serve (budget $b s): $SERVE_CMD"
  serve_and_smoke "$b" > >(tee "$STEPS/serve.log" >> "$LOG") 2>&1
  rc=$?
  sleep 0.2
  RESULT[serve]="rc=$rc; $(grep -E '^(Successful|Failed) requests' "$STEPS/serve.log" | tr -s ' ' | paste -sd' '); \
$(grep -cE '^inferd_' "$STEPS/serve.log") inferd_ metric samples; $(grep -m1 -E ' (error|critical) ' "$OUT/server.log" | cut -c1-200)"
  [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
  note "step serve rc=$rc"
  write_summary
fi

# ---- 4. inferd-bench at concurrency 1, 32, 256 (needs the server of step 3)
for c in 1 32 256; do
  requests=$((c == 1 ? 4 : c * 2))
  if [ "$DRY_RUN" = 1 ]; then
    run_step "bench_c$c" "inferd-bench --concurrency $c --num-requests $requests --input-len 128 --output-len 64"
    continue
  fi
  if [ ! -f "$STEPS/server" ]; then RESULT[bench_c$c]="not run: no server"; continue; fi
  read -r port metrics < "$STEPS/server"
  run_step "bench_c$c" "$BIN/inferd-bench" --target "127.0.0.1:$port" --scrape-metrics "$metrics" --ready-timeout 10 \
    --concurrency $c --num-requests $requests --input-len 128 --output-len 64 --seed $((c + 1))
  rc=$?
  RESULT[bench_c$c]="rc=$rc; $(grep -E '^Output token throughput' "$STEPS/bench_c$c.log" | tr -s ' ')"
  write_summary
done
cleanup
SERVER_PID=""

# ---- 5. the forward benchmark
run_step forward_benchmark "$BIN/gpu_benchmark" --batches 1,32,256 --prefill 512,2048,8192 --reps 5 \
  --json "$OUT/gpu_benchmark.json"
rc=$?
if [ "$DRY_RUN" = 0 ]; then
  RESULT[forward_benchmark]="rc=$rc (table below)"
  [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
  write_summary
  echo
  cat "$SUMMARY"
  note "done: $FAILED steps failed"
  [ $FAILED -eq 0 ]
else
  write_summary
  note "dry run: every step listed with its cap; $(caps_total) s of caps under the ${DEADLINE_S} s deadline"
fi

#!/usr/bin/env bash
# The CUDA backend's GPU check, as one script for a lent NVIDIA machine
# (H200; see the device tool's README, HOPPER.md, METHOD.md). Two steps:
#
# 1. Here, after building (cmake -DINFERD_CUDA=ON, targets: the cuda_*_test
#    binaries of tests/gpu and gpu_benchmark):
#        tests/gpu/device_check.sh bundle [BUILD_DIR]      # default: build
#    copies those binaries, the shared libraries they need that a CUDA image
#    may lack (Abseil, libgomp, libstdc++, cudart) and the golden outputs
#    into build/gpu-bundle (~30 MB), the one path to carry.
# 2. There, in the repository root, with $OUT set:
#        tests/gpu/device_check.sh
#    uses build/gpu-bundle, else the binaries of a carried build/, else
#    configures and builds build-gpu with nvcc (-DINFERD_CUDA=ON, sm_90) if
#    the machine has the dependencies; runs every GPU test (the same tests
#    `ctest -L gpu` runs) with their output in $OUT/gpu_tests.log, then the
#    benchmark (dummy:llama3-8b, bf16) with $OUT/gpu_benchmark.{log,json}.
#    A summary and the benchmark table come last. About 2-4 minutes with a
#    carried bundle; a build there adds several.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
BUNDLE=build/gpu-bundle
TESTS=(cuda_kernels_test cuda_gemm_test cuda_attention_test cuda_dummy_weights_test cuda_backend_test
       cuda_golden_test cuda_unavailable_test)

bundle() {
  local build=${1:-build}
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/shared" || exit 1
  local binaries=()
  for t in "${TESTS[@]}"; do binaries+=("$build/tests/gpu/$t"); done
  binaries+=("$build/benchmarks/gpu_benchmark")
  for b in "${binaries[@]}"; do
    [ -x "$b" ] || { echo "device_check: $b is missing; build it first (-DINFERD_CUDA=ON)" >&2; exit 1; }
    cp "$b" "$BUNDLE/bin/" && strip --strip-unneeded "$BUNDLE/bin/$(basename "$b")"
  done
  # Libraries outside glibc, the driver and the big CUDA libraries (cuBLAS
  # is in every CUDA image).
  ldd "${binaries[@]}" 2>/dev/null | awk '/=> \// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libcublas|libcublasLt)\.so' |
    while read -r lib; do cp -L "$lib" "$BUNDLE/lib/"; done
  if [ -d "$ROOT/../shared/golden" ]; then
    cp -r "$ROOT/../shared/golden" "$BUNDLE/shared/"
  else
    echo "device_check: no ../shared/golden beside the checkout; the golden test will fail there" >&2
  fi
  du -sh "$BUNDLE"
  echo "carry: [\"$BUNDLE\"]   command: tests/gpu/device_check.sh"
}

if [ "${1:-}" = "bundle" ]; then
  bundle "${2:-build}"
  exit 0
fi

OUT=${OUT:-$ROOT/build-device-check}  # (ignored by git)
mkdir -p "$OUT"
LOG="$OUT/gpu_tests.log"
: > "$LOG"
START=$(date +%s)
note() { echo "[device_check $(($(date +%s) - START))s] $*" | tee -a "$LOG"; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee -a "$LOG"

export LD_LIBRARY_PATH="$ROOT/$BUNDLE/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
export INFERD_SOURCE_DIR="$ROOT"
for dir in "$ROOT/$BUNDLE/shared" "$ROOT/shared" "$ROOT/../shared"; do
  if [ -f "$dir/golden/stories260K_greedy_public.jsonl" ]; then export INFERD_SHARED_DIR="$dir"; break; fi
done
[ -n "${INFERD_SHARED_DIR:-}" ] || note "no golden outputs found (carry $BUNDLE): the golden test will fail"

# Binaries that start here (a bundle or carried build from another image
# may miss a library).
runs() { [ -x "$1" ] && "$1" --gtest_list_tests > /dev/null 2>> "$LOG"; }
BIN="" BENCH=""
if runs "$BUNDLE/bin/cuda_kernels_test"; then
  BIN="$BUNDLE/bin" BENCH="$BUNDLE/bin/gpu_benchmark"
elif runs build/tests/gpu/cuda_kernels_test; then
  BIN=build/tests/gpu BENCH=build/benchmarks/gpu_benchmark
fi
if [ -n "$BIN" ]; then
  note "using the carried binaries in $BIN"
else
  note "no carried binaries run here; building build-gpu with nvcc"
  if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DINFERD_CUDA=ON -DINFERD_CUDA_ARCHITECTURES=90 \
      >> "$LOG" 2>&1; then
    note "configure failed (missing dependencies on this machine?); see $LOG"
    tail -20 "$LOG"
    exit 1
  fi
  if ! cmake --build build-gpu -j"$(nproc)" --target "${TESTS[@]}" gpu_benchmark >> "$LOG" 2>&1; then
    note "build failed; see $LOG"
    tail -30 "$LOG"
    exit 1
  fi
  BIN=build-gpu/tests/gpu BENCH=build-gpu/benchmarks/gpu_benchmark
fi

# The GPU tests, one binary at a time (what `ctest -L gpu` runs); their
# output goes to the log, a line per binary to the summary.
FAILED=0
SUMMARY=""
TMP_LOG=$(mktemp)
for t in "${TESTS[@]}"; do
  [ "$t" = cuda_unavailable_test ] && continue  # it skips where a GPU is present
  note "running $t"
  timeout 300 "$BIN/$t" --gtest_color=no > "$TMP_LOG" 2>&1
  rc=$?
  cat "$TMP_LOG" >> "$LOG"
  [ $rc -eq 0 ] || { FAILED=$((FAILED + 1)); note "$t failed (rc=$rc)"; }
  SUMMARY+=$(printf '%-26s rc=%-4s passed %s %s\n' "$t" "$rc" \
    "$(grep -E '^\[  PASSED  \]' "$TMP_LOG" | tail -1 | sed 's/\[  PASSED  \] //')" \
    "$(grep -E '^\[  (FAILED|SKIPPED) +\] [0-9]+ test' "$TMP_LOG" | sed 's/\[  //; s/ *\] / /' | tr '\n' ' ')")$'\n'
done
rm -f "$TMP_LOG"

if [ -x build/inferd ]; then
  note "carried build/inferd starts: $(build/inferd --version 2>&1 | head -1)"
fi

note "running the benchmark"
timeout 420 "$BENCH" --json "$OUT/gpu_benchmark.json" > "$OUT/gpu_benchmark.log" 2>&1
BENCH_RC=$?
note "benchmark rc=$BENCH_RC"

echo
echo "== GPU tests ($FAILED binaries failed; full output in $LOG)"
printf '%s' "$SUMMARY"
grep -E '^\[  FAILED  \] [A-Za-z]' "$LOG" | sort -u | head -20
echo
echo "== benchmark (rc=$BENCH_RC; $OUT/gpu_benchmark.json)"
tail -12 "$OUT/gpu_benchmark.log"
[ $FAILED -eq 0 ] && [ $BENCH_RC -eq 0 ]

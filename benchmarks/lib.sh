# Shared by the benchmark scripts (run_bench.sh, run_protocol_bench.sh);
# sourced, not run. Runs from the repository root with `set -euo pipefail`.
# Gives: a work folder ($work) removed on exit with the server that
# bench_start_server started; the build; the server's ports read from its
# log; a field of inferd-bench's table; and the replacement of one marked
# section of benchmarks/RESULTS.md.

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
RESULTS=${RESULTS:-benchmarks/RESULTS.md}

work=$(mktemp -d)
server_pid=""
bench_stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
bench_cleanup() {
  bench_stop_server
  rm -rf "$work"
}
trap bench_cleanup EXIT

# bench_build TARGET...: configures (Release) and builds only those targets.
bench_build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "$@"
}

# bench_start_server LOG CMD...: starts the server and waits until its log
# names its ports; sets server_pid, port (gRPC), http_port and metrics_url
# (empty when that listener is off). Fails (status 1, the log on stderr)
# if it never does; under `set -e` a plain call ends the script there.
bench_start_server() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  server_pid=$!
  port="" http_port="" metrics_url=""
  local want_http=0 want_metrics=0
  [[ " $* " == *" --http-port -1 "* ]] || want_http=1
  [[ " $* " == *" --metrics-port -1 "* ]] || want_metrics=1
  for _ in $(seq 600); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    http_port=$(sed -n 's|.*openai api on http://127\.0\.0\.1:\([0-9]*\)/v1.*|\1|p' "$log" | head -1)
    metrics_url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/metrics' "$log" | head -1 || true)
    if [[ -n "$port" && ($want_http == 0 || -n "$http_port") && ($want_metrics == 0 || -n "$metrics_url") ]]; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not log its ports; log:" >&2
  cat "$log" >&2
  bench_stop_server
  return 1
}

# bench_wait_serving LOG [SECONDS]: after bench_start_server, waits until
# the model is loaded (the log says "serving"); fails, with the end of the
# log on stderr, if the server exits first or it takes longer than SECONDS
# (default 600).
bench_wait_serving() {
  local log=$1 limit=${2:-600}
  local deadline=$((SECONDS + limit))
  while ((SECONDS < deadline)); do
    grep -q ' info serving ' "$log" && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the server exited while loading; its log ends:" >&2
      tail -5 "$log" >&2
      server_pid=""
      return 1
    fi
    sleep 0.2
  done
  echo "the server did not finish loading in $limit s; its log ends:" >&2
  tail -5 "$log" >&2
  bench_stop_server
  return 1
}

# bench_field FILE LABEL: the value of "LABEL:   value" in an inferd-bench table.
bench_field() { sed -n "s/^$2:  *\(.*\)$/\1/p" "$1" | head -1; }

# The commit the figures belong to, marked when the tree has changes.
bench_commit() {
  local commit
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    commit="$commit (with uncommitted changes)"
  fi
  echo "$commit"
}

# bench_write_section BEGIN_MARK END_MARK SECTION_FILE: replaces the lines
# from BEGIN_MARK to END_MARK in $RESULTS with SECTION_FILE (which carries
# both marks), or appends it; everything else in the file stays.
bench_write_section() {
  local begin=$1 end=$2 section=$3
  if [[ -f "$RESULTS" ]] && grep -qF "$begin" "$RESULTS"; then
    awk -v begin="$begin" -v end="$end" -v section="$section" '
      $0 == begin { while ((getline line < section) > 0) print line; skipping = 1; next }
      $0 == end { skipping = 0; next }
      !skipping { print }' "$RESULTS" >"$work/results.md"
    cat "$work/results.md" >"$RESULTS"
  else
    [[ -f "$RESULTS" ]] || printf '# Benchmark results\n\nEvery number here comes from the command written next to it.\n' >"$RESULTS"
    { echo; cat "$section"; } >>"$RESULTS"
  fi
}

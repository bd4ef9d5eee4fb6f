# inferd — top-level entry points. `make test` and `make serve` do all set-up.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# Paths relative to the checkout in ccache keys, so any clone shares hits.
export CCACHE_BASEDIR := $(CURDIR)

.PHONY: deps configure build test serve clean

deps:
	./scripts/install_deps.sh

configure:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

serve: deps build
	$(BUILD_DIR)/inferd serve

clean:
	rm -rf $(BUILD_DIR)

# Engine and load benchmarks on dummy:llama-110m (CPU) per weight dtype, with
# the memory-bandwidth roofline and issue 11's llama-server bars: about five
# minutes on two cores; the numbers go into benchmarks/RESULTS.md
# (benchmarks/run_bench.sh; BENCH_DTYPES, BENCH_REQUESTS_C1/_C8 size it).
.PHONY: bench
bench: deps
	BUILD_DIR=$(BUILD_DIR) JOBS=$(JOBS) ./benchmarks/run_bench.sh

# The CPU container image (Dockerfile) as localhost/inferd:latest, with
# podman; no registry needed (scripts/build_image.sh).
.PHONY: image test-image
image:
	./scripts/build_image.sh

# Runs the image and checks it: health, a generation, /metrics, non-root,
# size, and a clean drain on `podman stop` during a stream (tests/image/).
test-image: build image
	cd tests/image && PYTHONPATH=$(abspath $(BUILD_DIR))/python:$(CURDIR)/tests/integration/python \
	  PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m unittest -v test_image

# gRPC vs the OpenAI HTTP API at 8 streams on dummy:llama-110m (about a
# minute); the numbers go into benchmarks/RESULTS.md.
.PHONY: bench-protocols
bench-protocols: deps
	BUILD_DIR=$(BUILD_DIR) JOBS=$(JOBS) ./benchmarks/run_protocol_bench.sh

# AddressSanitizer + UndefinedBehaviorSanitizer over the suite (issue 12), in
# its own build folder; the servers the tests start are sanitized too and
# must exit 0 (no leak) after SIGTERM. The sanitizer builds are made cheap:
# -O1 -g1 (line tables: enough for reports), no CUDA, no benchmarks (nor the
# tests of inferd-bench).
ASAN_DIR ?= build-asan
SANITIZER_CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DINFERD_CUDA=OFF -DINFERD_BENCHMARKS=OFF
ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
.PHONY: asan-configure test-asan
asan-configure: deps
	cmake -S . -B $(ASAN_DIR) $(SANITIZER_CMAKE_FLAGS) \
	  -DCMAKE_CXX_FLAGS="$(ASAN_FLAGS)" -DCMAKE_C_FLAGS="$(ASAN_FLAGS)" \
	  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined"
test-asan: asan-configure
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 900 -LE gpu

# libFuzzer targets (issue 12; tests/fuzz/): clang with ASan and UBSan in
# its own build folder. `fuzz` runs each target 60 s, `fuzz-ci` 10 s.
FUZZ_DIR ?= build-fuzz
.PHONY: fuzz-build fuzz fuzz-ci
fuzz-build: deps
	CC=clang CXX=clang++ cmake -S tests/fuzz -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_DIR) -j $(JOBS)
fuzz: fuzz-build
	tests/fuzz/run_fuzzers.sh $(FUZZ_DIR) 60
fuzz-ci: fuzz-build
	tests/fuzz/run_fuzzers.sh $(FUZZ_DIR) 10

# ThreadSanitizer over the engine and server unit tests (issue 12), in its
# own build folder, building only those tests (and the inferd binary some of
# them run). Debian's absl locks are made visible to TSan
# (tests/testing/tsan_absl_annotations.cc); what is left inside gRPC,
# protobuf and absl themselves is suppressed by tests/tsan.supp, never in our
# code. The CPU backend's thread pool (engine/cpu/thread_pool) is our own
# code on C++ atomics, so TSan checks it.
TSAN_DIR ?= build-tsan
TSAN_TESTS = $(sort $(basename $(notdir $(wildcard tests/engine/*_test.cc tests/server/*_test.cc))))
.PHONY: test-tsan
test-tsan: deps
	cmake -S . -B $(TSAN_DIR) $(SANITIZER_CMAKE_FLAGS) -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
	  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread"
	cmake --build $(TSAN_DIR) -j $(JOBS) --target $(TSAN_TESTS)
	cd $(TSAN_DIR) && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp second_deadlock_stack=1" \
	  ctest --output-on-failure -j $(JOBS) --timeout 900 -L "^(engine|server)$$"

# Soak (issue 12; tests/soak/): mixed load with cancels, deadlines, aborts
# and bad requests against the real server; every status must be one API.md
# lists, KV blocks and queues back to 0, RSS growth < 50 MB, exit 0 on
# SIGTERM. `soak` runs SOAK_SECONDS (10 minutes) on the release build;
# `soak-ci` 60 s on the ASan+UBSan server (build-asan), where any sanitizer
# report fails it.
SOAK_SECONDS ?= 600
.PHONY: soak soak-ci
soak: deps build
	/usr/bin/python3 tests/soak/soak.py --binary $(BUILD_DIR)/inferd --stubs $(BUILD_DIR)/python \
	  --duration $(SOAK_SECONDS)
soak-ci: asan-configure
	cmake --build $(ASAN_DIR) -j $(JOBS) --target inferd inferd_python_stubs
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  /usr/bin/python3 tests/soak/soak.py --binary $(ASAN_DIR)/inferd --stubs $(ASAN_DIR)/python \
	  --duration 60 --sanitized

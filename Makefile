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
# must exit 0 (no leak) after SIGTERM. A cold build takes about an hour on two
# shared cores, so it is not part of .ci/run yet.
ASAN_DIR ?= build-asan
SANITIZER_CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERD_CUDA=OFF
.PHONY: test-asan
test-asan: deps
	cmake -S . -B $(ASAN_DIR) $(SANITIZER_CMAKE_FLAGS) \
	  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  -DCMAKE_C_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined"
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

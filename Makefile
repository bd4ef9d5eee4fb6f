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

# Engine and load benchmarks on dummy:llama-110m (CPU): a few minutes on two
# cores; the numbers go into benchmarks/RESULTS.md (benchmarks/run_bench.sh).
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

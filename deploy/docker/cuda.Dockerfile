# The inferd CUDA image: the CPU image (../../Dockerfile) plus the CUDA
# backend plugin (libinferd_cuda.so beside inferd), on NVIDIA's CUDA 13
# bases. Build from the repository root:
#   podman build -f deploy/docker/cuda.Dockerfile -t localhost/inferd-cuda:latest .
# Run: podman run --device nvidia.com/gpu=all ... localhost/inferd-cuda:latest
#      (serve --backend cuda; the gpu overlay in deploy/kubernetes does so).
#
# NOT BUILT HERE: NVIDIA's bases come from a registry these machines cannot
# reach. It follows the CPU Dockerfile step for step, and
# tests/deploy/test_deploy.py checks that the two derive their runtime
# packages the same way and keep the same user, entrypoint, command and ports.
ARG CUDA_VERSION=13.0.1
ARG BUILD_BASE=docker.io/nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04
ARG BASE=docker.io/nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04

# --- build ------------------------------------------------------------------
FROM ${BUILD_BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/install_deps.sh /src/scripts/install_deps.sh
RUN /src/scripts/install_deps.sh --build-only && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY engine engine
COPY cuda cuda
COPY server server
COPY benchmarks benchmarks
COPY models models
COPY scripts/runtime_packages.sh scripts/runtime_packages.sh
# Ampere, Hopper and Blackwell (sm_80, sm_90, sm_100, sm_120).
ARG CUDA_ARCHITECTURES="80;90;100;120"
ENV CCACHE_DIR=/ccache CCACHE_BASEDIR=/src
RUN --mount=type=cache,target=/ccache,id=inferd-cuda-ccache \
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DINFERD_CUDA=ON \
          -DINFERD_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
 && cmake --build build -j"$(nproc)" --target inferd inferd-bench inferd_cuda_plugin \
 && mkdir -p /out/bin /out/models \
 && strip -o /out/bin/inferd build/inferd \
 && strip -o /out/bin/inferd-bench build/inferd-bench \
 && strip -o /out/bin/libinferd_cuda.so build/libinferd_cuda.so \
 && cp -r models/stories260K models/llama2-tokenizer models/LICENSE-llama2c-MIT.txt /out/models/ \
 && scripts/runtime_packages.sh /out/bin/inferd /out/bin/inferd-bench /out/bin/libinferd_cuda.so \
      > /out/runtime-packages.txt

# --- runtime ----------------------------------------------------------------
FROM ${BASE}
# Runtime libraries only: the packages that hold what the binaries load
# (scripts/runtime_packages.sh, run in the build stage); the CUDA runtime
# and cuBLAS come with the base.
COPY --from=build /out/runtime-packages.txt /usr/share/inferd/runtime-packages.txt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive xargs -a /usr/share/inferd/runtime-packages.txt \
      apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin inferd
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/models/ /opt/inferd/models/
ENV INFERD_MODELS_DIR=/opt/inferd/models
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 50051 9400 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["inferd"]
CMD ["serve", "--backend", "cuda"]

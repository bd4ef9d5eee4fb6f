# The inferd CPU image: `make image` builds it (podman, here without a
# registry: scripts/build_image.sh), `make test-image` runs and checks it.
#
#   podman run --rm --network host localhost/inferd:latest             # bundled model, :50051 and :9400
#   podman run --rm -p 50051:50051 -p 9400:9400 \
#     -v /srv/models/my-model:/models/my-model:ro \
#     localhost/inferd:latest serve --host 0.0.0.0 --model /models/my-model
#
# Mount models under /models (read-only is enough); the bundled ones are in
# /opt/inferd/models. inferd is PID 1 and handles SIGTERM itself (drain,
# then exit 0), so give the container a stop timeout above
# --drain-timeout-seconds (30 s by default), e.g. `podman stop -t 40`.
# The binaries are built for x86-64-v3 (AVX2, FMA).
#
# deploy/docker/cuda.Dockerfile is the CUDA image: it derives its runtime
# packages the same way and keeps the same user, entrypoint and ports
# (tests/deploy/test_deploy.py checks that they do not drift).
ARG BASE=debian:bookworm-slim

# --- build ------------------------------------------------------------------
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# The toolchain and -dev packages, in a layer of their own: source changes
# do not invalidate it.
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
# ccache in a cache mount: a rebuild after a source change recompiles only
# what changed, even though this layer is rebuilt.
ENV CCACHE_DIR=/ccache CCACHE_BASEDIR=/src
RUN --mount=type=cache,target=/ccache,id=inferd-ccache \
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DINFERD_CUDA=OFF \
 && cmake --build build -j"$(nproc)" --target inferd inferd-bench \
 && mkdir -p /out/bin /out/models \
 && strip -o /out/bin/inferd build/inferd \
 && strip -o /out/bin/inferd-bench build/inferd-bench \
 && cp -r models/stories260K models/llama2-tokenizer models/LICENSE-llama2c-MIT.txt /out/models/ \
 && scripts/runtime_packages.sh /out/bin/inferd /out/bin/inferd-bench > /out/runtime-packages.txt

# --- runtime ----------------------------------------------------------------
FROM ${BASE}
# Runtime libraries only: the packages that hold what the binaries load
# (scripts/runtime_packages.sh, run in the build stage).
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
USER 10001:10001
EXPOSE 50051 9400 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["inferd"]
CMD ["serve"]

# syntax=docker/dockerfile:1
#
# The one NetHouse image: nethouse, nethouse-cni, nethouse-scheduler-extender and
# nethouse-location-controller in /usr/local/bin, the CNI conflist templates in
# /etc/nethouse-cni/templates/. manifests/ runs every component from it
# (ghcr.io/nethouse/nethouse:v0.1.0; retarget with the `images:` entry of manifests/base/kustomization.yaml).
#
#   docker build -t ghcr.io/nethouse/nethouse:v0.1.0 .
#
# NOTE: never built on the development machines — they have no Docker engine (the tests run
# the binaries directly on a real control plane instead). Build it where Docker/BuildKit is.

FROM rust:1-bookworm AS build
# protoc: for gRPC/protobuf dependencies (the etcd store); harmless when none needs it.
# musl-tools: the static nethouse-cni is linked against musl (scripts/build-cni-static.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only the workspace (every member's manifest must be there), never a local target/.
COPY Cargo.toml Cargo.lock ./
COPY nethouse-api nethouse-api
COPY nethouse nethouse
COPY cni-plugin cni-plugin
COPY scheduler-extender scheduler-extender
COPY location-controller location-controller
COPY runtime runtime
COPY tests tests
COPY scripts/build-cni-static.sh scripts/
# The musl target in its own layer; NETHOUSE_CNI_LIBC=musl makes the build fail rather than ship
# the glibc fallback.
RUN rustup target add "$(uname -m)-unknown-linux-musl"
ENV NETHOUSE_CNI_LIBC=musl
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p nethouse -p nethouse-cni -p nethouse-scheduler-extender -p nethouse-location-controller \
 && mkdir -p /out \
 && cp target/release/nethouse \
       target/release/nethouse-scheduler-extender target/release/nethouse-location-controller /out/ \
 && cp "$(./scripts/build-cni-static.sh)" /out/

# glibc and libgcc (Rust's std needs them), CA certificates, no shell. nethouse-cni is the static
# musl build (scripts/build-cni-static.sh): the DaemonSet copies it onto hosts whose C library varies.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/ /usr/local/bin/
COPY cni-plugin/conflist/bridge.conflist.tmpl cni-plugin/conflist/macvlan.conflist.tmpl /etc/nethouse-cni/templates/
# Non-root by default; the CNI DaemonSet's install step alone runs as root (host paths).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/nethouse"]

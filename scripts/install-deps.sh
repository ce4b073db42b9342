#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine of this kind.
# Idempotent: asks apt only for packages that are missing.
set -euo pipefail

# python3: scripts/check-module-tree.py; containernetworking-plugins: Debian's bridge/macvlan/host-local
# for the CNI tests and bench;
# iputils-ping: the netns tests prove connectivity with ping; etcd-server: the control plane's etcd
# (etcd-client: etcdctl, for tests that change etcd behind the apiserver's back);
# musl-tools (musl-gcc, for aws-lc's C code), libc6-dev (libc.a, the glibc fallback) and binutils
# (readelf): the static nethouse-cni (scripts/build-cni-static.sh, which adds the Rust musl target).
# containerd (with ctr), runc: the real nodes' container runtime, one containerd per node namespace
# (shared/reference/REAL-NODE.md); busybox-static: the static toolbox the pause and client images
# are built from (tests/harness/build-images.sh). iptables: kube-proxy (iptables mode) on the real
# nodes of the install test and in its fabric; ca-certificates: the CA bundle of the project's
# image (tests/harness/build-nethouse-image.sh). protobuf-compiler: protoc, which the etcd-client
# crate's build script runs on etcd's .proto files (NetHouse's etcd store).
packages=(openssl python3 curl iproute2 containernetworking-plugins iputils-ping etcd-server etcd-client musl-tools libc6-dev binutils containerd runc busybox-static iptables ca-certificates protobuf-compiler)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
    echo "install-deps: go not found; the control-plane harness builds Kubernetes from the Go module proxy with it" >&2
    exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: cargo not found; this machine kind ships Rust via rustup (~/.cargo/bin)" >&2
    exit 1
fi

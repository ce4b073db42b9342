#!/usr/bin/env bash
# Builds images of upstream binaries the harness already has, without a daemon or a registry, as
# docker-archive tarballs for `ctr -n k8s.io images import`:
#   kube-scheduler.tar  nethouse.local/kube-scheduler:<version>  the harness's kube-scheduler
#                       (build-k8s.sh), for the second scheduler the base ships
#                       (registry.k8s.io/kube-scheduler in manifests/base/scheduler/nethouse-scheduler.yaml)
#   coredns.tar         nethouse.local/coredns:<version>  build-coredns.sh's CoreDNS, the
#                       cluster DNS (only when COREDNS is given)
# Both are static Go binaries in /usr/local/bin, user 65532 as upstream's distroless images.
#
# Usage: tests/harness/build-upstream-images.sh OUT_DIR K8S_BIN_DIR [COREDNS]
# Prints each tarball's path and image reference, one "PATH REF" line each.
set -euo pipefail

log() { printf '[upstream-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

OUT="${1:?usage: build-upstream-images.sh OUT_DIR K8S_BIN_DIR [COREDNS]}"
K8S="${2:?usage: build-upstream-images.sh OUT_DIR K8S_BIN_DIR [COREDNS]}"
COREDNS="${3:-}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=docker-archive.sh
. "$here/docker-archive.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# binary_image NAME BINARY REF: a static binary in /usr/local/bin, its entrypoint.
binary_image() {
    local name="$1" bin="$2" ref="$3" root="$work/$1"
    [[ -x "$bin" ]] || die "$bin not found"
    if ldd "$bin" >/dev/null 2>&1; then
        die "$bin is dynamically linked"
    fi
    base_rootfs "$root"
    mkdir -p "$root/usr/local/bin"
    cp "$bin" "$root/usr/local/bin/$name"
    docker_archive "$root" "$ref" \
        "{\"Env\":[\"PATH=/usr/local/bin:/usr/bin:/bin\"],\"Entrypoint\":[\"/usr/local/bin/$name\"],\"User\":\"65532:65532\",\"WorkingDir\":\"/\"}" \
        "$OUT/$name.tar"
    printf '%s %s\n' "$OUT/$name.tar" "$ref"
}

k8s_version="$("$K8S/kube-scheduler" --version | awk '{print $2}')"
[[ "$k8s_version" == v* ]] || die "cannot read the version of $K8S/kube-scheduler"
binary_image kube-scheduler "$K8S/kube-scheduler" "nethouse.local/kube-scheduler:$k8s_version"
if [[ -n "$COREDNS" ]]; then
    dns_version="$("$COREDNS" -version | sed -n 's/^CoreDNS-\([0-9.]*\).*/v\1/p')"
    [[ -n "$dns_version" ]] || die "cannot read the version of $COREDNS"
    binary_image coredns "$COREDNS" "nethouse.local/coredns:$dns_version"
fi

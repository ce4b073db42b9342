#!/usr/bin/env bash
# Builds the project's image without a daemon or a registry: what the Dockerfile's
# ghcr.io/nethouse/nethouse:v0.1.0 holds, from this workspace's release binaries, as a
# docker-archive tarball for `ctr -n k8s.io images import` (the real-node install test).
#   /usr/local/bin/nethouse, nethouse-scheduler-extender, nethouse-location-controller
#                      the release builds (glibc, dynamic), debug info stripped (symbols kept)
#   /usr/local/bin/nethouse-cni   the static musl build of scripts/build-cni-static.sh
#   /etc/nethouse-cni/templates/*.tmpl   cni-plugin/conflist/
#   /etc/ssl/certs/ca-certificates.crt   Debian's CA bundle
#   the shared libraries the dynamic binaries load (what ldd lists, at the same paths): what
#   distroless/cc gives the Dockerfile's image
# User 65532:65532, entrypoint /usr/local/bin/nethouse, as the Dockerfile sets.
#
# Usage: tests/harness/build-nethouse-image.sh OUT_DIR
# Writes OUT_DIR/nethouse.tar (nethouse.local/nethouse:test) and prints its path.
# Builds the binaries first (cargo; quick when they are current). NETHOUSE_IMAGE_NO_BUILD=1
# takes them as they are.
set -euo pipefail

REF="nethouse.local/nethouse:test"
BINS=(nethouse nethouse-scheduler-extender nethouse-location-controller)

log() { printf '[nethouse-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

OUT="${1:?usage: build-nethouse-image.sh OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=docker-archive.sh
. "$here/docker-archive.sh"

cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
if [[ -z "${NETHOUSE_IMAGE_NO_BUILD:-}" ]]; then
    t0=$SECONDS
    cargo build --release --locked --quiet -p nethouse -p nethouse-scheduler-extender \
        -p nethouse-location-controller >&2
    # As the Dockerfile: musl or fail, never the glibc fallback.
    cni="$(NETHOUSE_CNI_LIBC=musl ./scripts/build-cni-static.sh)"
    log "binaries current in $((SECONDS - t0))s"
else
    cni="$target/$(uname -m)-unknown-linux-musl/release/nethouse-cni"
fi
[[ -x "$cni" ]] || die "$cni not built (scripts/build-cni-static.sh)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
base_rootfs "$root"
mkdir -p "$root/usr/local/bin" "$root/etc/nethouse-cni/templates" "$root/etc/ssl/certs"
for b in "${BINS[@]}"; do
    [[ -x "$target/release/$b" ]] || die "$target/release/$b not built"
    objcopy --strip-debug "$target/release/$b" "$root/usr/local/bin/$b"
    # Each library at the path the loader looks for it (the interpreter at its absolute path).
    while read -r lib; do
        [[ -e "$root$lib" ]] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done < <(ldd "$target/release/$b" | grep -o '/[^ ]*' | sort -u)
done
cp "$cni" "$root/usr/local/bin/nethouse-cni"
if ldd "$root/usr/local/bin/nethouse-cni" >/dev/null 2>&1; then
    die "$cni is dynamically linked"
fi
cp cni-plugin/conflist/bridge.conflist.tmpl cni-plugin/conflist/macvlan.conflist.tmpl \
    "$root/etc/nethouse-cni/templates/"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" ||
    die "no /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates)"

docker_archive "$root" "$REF" \
    '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Entrypoint":["/usr/local/bin/nethouse"],"User":"65532:65532","WorkingDir":"/"}' \
    "$OUT/nethouse.tar"
printf '%s\n' "$OUT/nethouse.tar"

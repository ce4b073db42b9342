#!/usr/bin/env bash
# Builds the Whereabouts IPAM CNI plugin, the peer the real-node bench compares NetHouse with,
# from the Go module proxy the way build-coredns.sh builds CoreDNS: a throwaway main module that
# requires github.com/k8snetworkplumbingwg/whereabouts at one pinned version and builds its
# plugin command (the package `cmd` of the module, what its own build names `whereabouts`),
# static (CGO_ENABLED=0, as upstream builds it), with the version stamped as upstream's release
# build stamps it. The module's CRDs (IPPool, OverlappingRangeIPReservation, NodeSlicePool) are
# copied next to the binary: an install applies them before the plugin's first call.
#
# Usage: tests/harness/build-whereabouts.sh [OUT_DIR]
#   OUT_DIR defaults to ${NETHOUSE_WHEREABOUTS_CACHE:-$HOME/.cache/nethouse/whereabouts}/<version>
# Prints the binary's path (and nothing else) on stdout; the CRDs are OUT_DIR/crds/*.yaml.
# Cached: a later run only prints it.
set -euo pipefail

WHEREABOUTS_VERSION="v0.9.2"
MODULE="github.com/k8snetworkplumbingwg/whereabouts"

log() { printf '[build-whereabouts] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

. "$(dirname "${BASH_SOURCE[0]}")/go-cache.sh"
# The binary is moved into place last, so its presence means the CRDs are there too.
go_cached Whereabouts "$WHEREABOUTS_VERSION" whereabouts "${NETHOUSE_WHEREABOUTS_CACHE:-$HOME/.cache/nethouse/whereabouts}" "${1:-}"
{
    echo "module nethouse.local/whereabouts-build"
    echo
    echo "go 1.24"
    echo
    echo "require $MODULE $WHEREABOUTS_VERSION"
} > go.mod
log "resolving $MODULE@$WHEREABOUTS_VERSION (first run downloads its modules)"
go get "$MODULE/cmd@$WHEREABOUTS_VERSION" >&2
module_dir="$(go list -m -f '{{.Dir}}' "$MODULE")"
[[ -d "$module_dir/doc/crds" ]] || die "no doc/crds in $module_dir"

t0=$SECONDS
log "building whereabouts $WHEREABOUTS_VERSION..."
version_pkg="$MODULE/pkg/version"
go build -trimpath \
    -ldflags "-s -w -X $version_pkg.Version=$WHEREABOUTS_VERSION -X $version_pkg.ReleaseStatus=released" \
    -o "$BIN.tmp" "$MODULE/cmd" >&2

mkdir -p "$OUT_DIR/crds"
# Only the CustomResourceDefinitions: the directory also holds upstream's DaemonSet install.
for f in "$module_dir"/doc/crds/whereabouts.cni.cncf.io_*.yaml; do
    install -m 0644 "$f" "$OUT_DIR/crds/"
done
ls "$OUT_DIR"/crds/*.yaml >/dev/null 2>&1 || die "no CRD copied from $module_dir/doc/crds"
mv -f "$BIN.tmp" "$BIN"
log "built whereabouts in $((SECONDS - t0))s; CRDs: $(cd "$OUT_DIR/crds" && echo *.yaml)"
printf '%s\n' "$BIN"
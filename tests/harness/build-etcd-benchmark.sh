#!/usr/bin/env bash
# Builds etcd's own load generator (`benchmark`, etcd's tools/benchmark) from the Go module
# proxy, for the anchor of the etcd benchmark: how many durable puts per second the same etcd
# cluster takes from the same number of clients, next to NetHouse's allocations on it. A
# throwaway main module requires go.etcd.io/etcd/v3 at one pinned version and builds the
# package, as build-coredns.sh does for CoreDNS. The tool speaks etcd's v3 API, which Debian's
# etcd-server (3.4) serves.
#
# Usage: tests/harness/build-etcd-benchmark.sh [OUT_DIR]
#   OUT_DIR defaults to ${NETHOUSE_ETCD_BENCHMARK_CACHE:-$HOME/.cache/nethouse/etcd-benchmark}/<version>
# Prints the binary's path (and nothing else) on stdout. Cached: a later run only prints it.
set -euo pipefail

ETCD_VERSION="v3.5.21"

log() { printf '[build-etcd-benchmark] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

. "$(dirname "${BASH_SOURCE[0]}")/go-cache.sh"
go_cached "etcd's benchmark" "$ETCD_VERSION" benchmark "${NETHOUSE_ETCD_BENCHMARK_CACHE:-$HOME/.cache/nethouse/etcd-benchmark}" "${1:-}"
{
    echo "module nethouse.local/etcd-benchmark-build"
    echo
    echo "go 1.22"
} > go.mod
{
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import _ \"go.etcd.io/etcd/v3/tools/benchmark\""
} > tools.go
log "resolving go.etcd.io/etcd/v3@$ETCD_VERSION (first run downloads its modules)"
go get "go.etcd.io/etcd/v3@$ETCD_VERSION" >&2
t0=$SECONDS
log "building etcd's benchmark $ETCD_VERSION..."
go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" go.etcd.io/etcd/v3/tools/benchmark >&2
mv -f "$BIN.tmp" "$BIN"
log "built in $((SECONDS - t0))s"
printf '%s\n' "$BIN"

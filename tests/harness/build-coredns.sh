#!/usr/bin/env bash
# Builds CoreDNS, the cluster DNS of the real-node install test, from the Go module proxy the
# way build-k8s.sh builds Kubernetes: a throwaway main module that requires
# github.com/coredns/coredns at one pinned version. Its main imports only the plugins a
# kubeadm-style Corefile uses (errors, health, ready, kubernetes, prometheus, forward, cache,
# loop, reload, loadbalance, log): the stock binary also links every cloud provider's SDK,
# several minutes more of compiling on 2 cores for plugins no test uses. The plugin order is
# CoreDNS's own (core/dnsserver/zdirectives.go), whatever the imports.
#
# Usage: tests/harness/build-coredns.sh [OUT_DIR]
#   OUT_DIR defaults to ${NETHOUSE_COREDNS_CACHE:-$HOME/.cache/nethouse/coredns}/<version>
# Prints the binary's path (and nothing else) on stdout. Cached: a later run only prints it.
set -euo pipefail

COREDNS_VERSION="v1.15.0"
PLUGINS=(errors health ready kubernetes metrics forward cache loop reload loadbalance log)

log() { printf '[build-coredns] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

. "$(dirname "${BASH_SOURCE[0]}")/go-cache.sh"
go_cached CoreDNS "$COREDNS_VERSION" coredns "${NETHOUSE_COREDNS_CACHE:-$HOME/.cache/nethouse/coredns}" "${1:-}"
{
    echo "module nethouse.local/coredns-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require github.com/coredns/coredns $COREDNS_VERSION"
} > go.mod
{
    echo "package main"
    echo
    echo "import ("
    for p in "${PLUGINS[@]}"; do
        printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"
    done
    printf '\t"github.com/coredns/coredns/coremain"\n'
    echo ")"
    echo
    echo "func main() { coremain.Run() }"
} > main.go
log "resolving github.com/coredns/coredns@$COREDNS_VERSION (first run downloads its modules)"
go get "github.com/coredns/coredns@$COREDNS_VERSION" >&2
t0=$SECONDS
log "building coredns $COREDNS_VERSION (plugins: ${PLUGINS[*]})..."
go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    -o "$BIN.tmp" . >&2
mv -f "$BIN.tmp" "$BIN"
log "built coredns in $((SECONDS - t0))s"
printf '%s\n' "$BIN"

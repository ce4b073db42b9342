#!/usr/bin/env bash
# Build upstream Kubernetes binaries from the k8s.io/kubernetes Go module at one
# pinned version, using only the Go module proxy: the control plane
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) and the node
# (kubelet, kube-proxy) for the real-node harness.
#
# Usage: tests/harness/build-k8s.sh [--control-plane] [OUT_DIR]
#   --control-plane  only the four control-plane binaries, so tests without real
#                    nodes never wait for a node build. kubelet and kube-proxy add
#                    ~8 min to a cold first build on 2 cores; with the Go build cache
#                    the control plane left behind they took 39 s here.
#   OUT_DIR defaults to ${NETHOUSE_K8S_CACHE:-$HOME/.cache/nethouse/k8s}/<version>/bin
# On success prints the bin dir (and nothing else) on stdout:
#   BIN=$(tests/harness/build-k8s.sh)
# Binaries already built at this version are kept; only missing ones are built.
#
# k8s.io/kubernetes cannot be `go install`ed directly: its go.mod replaces every
# k8s.io/* staging module with ./staging/... paths, and replace directives of a
# dependency are ignored. So we generate a throwaway main module that requires
# k8s.io/kubernetes and replaces each staging module with its published
# v0.<minor>.<patch> release, then `go build` the cmd packages from it.
set -euo pipefail

K8S_VERSION="v1.35.8"

CONTROL_PLANE=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
NODE=(kubelet kube-proxy)

if [[ "${1:-}" == "--control-plane" ]]; then
    shift
    BINARIES=("${CONTROL_PLANE[@]}")
else
    BINARIES=("${CONTROL_PLANE[@]}" "${NODE[@]}")
fi

log() { printf '[build-k8s] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# This machine kind installs Go under /usr/local/go.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || die "go not found in PATH or /usr/local/go/bin"

CACHE_ROOT="${NETHOUSE_K8S_CACHE:-$HOME/.cache/nethouse/k8s}/${K8S_VERSION}"
BIN_DIR="${1:-$CACHE_ROOT/bin}"
SRC_DIR="$CACHE_ROOT/src"
STAMP="$BIN_DIR/.k8s-version"

# ---- fast path: already built ---------------------------------------------
have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$BIN_DIR/$b" ]] || return 1
    done
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$K8S_VERSION" ]]
}

if have_all; then
    BIN_DIR="$(cd "$BIN_DIR" && pwd)"
    log "kubernetes $K8S_VERSION binaries already present in $BIN_DIR"
    printf '%s\n' "$BIN_DIR"
    exit 0
fi

# ---- derive versions ------------------------------------------------------
ver="${K8S_VERSION#v}"                 # 1.35.8
K8S_MAJOR="${ver%%.*}"                 # 1
rest="${ver#*.}"
K8S_MINOR="${rest%%.*}"                # 35
STAGING_VERSION="v0.${rest}"           # v0.35.8

mkdir -p "$BIN_DIR" "$SRC_DIR"
BIN_DIR="$(cd "$BIN_DIR" && pwd)"

# Serialise concurrent callers (they share $SRC_DIR); re-check after waiting.
exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then
    log "another build of $K8S_VERSION is running; waiting for its lock..."
    flock 9
fi
if have_all; then
    log "kubernetes $K8S_VERSION binaries already present in $BIN_DIR"
    printf '%s\n' "$BIN_DIR"
    exit 0
fi
# Binaries of another version go; those of this version stay and only missing ones are built.
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$K8S_VERSION" ]]; then
    MISSING=()
    for b in "${BINARIES[@]}"; do
        [[ -x "$BIN_DIR/$b" ]] || MISSING+=("$b")
    done
else
    rm -f "$STAMP"
    MISSING=("${BINARIES[@]}")
fi

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
export GOWORK=off

# ---- fetch the kubernetes go.mod and read its staging replace list -----------
log "fetching k8s.io/kubernetes@$K8S_VERSION go.mod from $(go env GOPROXY)"
cd "$SRC_DIR"
# A module must exist for `go mod download` to run in module mode; start clean.
rm -f go.mod go.sum
cat > go.mod <<EOF
module nethouse.local/k8s-build

go 1.25.0
EOF
gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[[ -n "$gomod" && -f "$gomod" ]] || die "could not download go.mod of k8s.io/kubernetes@$K8S_VERSION"

mapfile -t STAGING < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod" | sort -u)
((${#STAGING[@]} > 0)) || die "no ./staging replace directives found in $gomod"
log "replacing ${#STAGING[@]} staging modules with $STAGING_VERSION releases"

# Carry over the `godebug` default of upstream so runtime behaviour matches.
godebug="$(grep -E '^godebug ' "$gomod" || true)"
goline="$(grep -E '^go [0-9]' "$gomod" || echo 'go 1.25.0')"

{
    echo "module nethouse.local/k8s-build"
    echo
    echo "$goline"
    [[ -n "$godebug" ]] && { echo; echo "$godebug"; }
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in "${STAGING[@]}"; do
        printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"
    done
    echo ")"
} > go.mod

# ---- resolve the dependency graph for the commands to build -------------------
PKGS=()
for b in "${MISSING[@]}"; do PKGS+=("k8s.io/kubernetes/cmd/$b@$K8S_VERSION"); done
log "resolving module graph (go get ${#PKGS[@]} packages; first run downloads a lot)"
go get "${PKGS[@]}" >&2

# ---- build -----------------------------------------------------------------
build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${gomod%.mod}.info" 2>/dev/null || true)"
build_date="${build_date:-1970-01-01T00:00:00Z}"
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDFLAGS+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    LDFLAGS+=" -X ${pkg}.gitMajor=${K8S_MAJOR}"
    LDFLAGS+=" -X ${pkg}.gitMinor=${K8S_MINOR}"
    LDFLAGS+=" -X ${pkg}.gitTreeState=clean"
    LDFLAGS+=" -X ${pkg}.buildDate=${build_date}"
done

total_start=$SECONDS
n=${#MISSING[@]}
i=0
for b in "${MISSING[@]}"; do
    i=$((i + 1))
    log "building $b ($i/$n)..."
    t0=$SECONDS
    go build -trimpath -ldflags "$LDFLAGS" -o "$BIN_DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
    mv -f "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
    log "built $b in $((SECONDS - t0))s"
done
log "all $n binaries built in $((SECONDS - total_start))s"

printf '%s\n' "$K8S_VERSION" > "$STAMP"
printf '%s\n' "$BIN_DIR"

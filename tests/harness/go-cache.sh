# Sourced by the harness's Go builds (build-coredns.sh, build-whereabouts.sh,
# build-etcd-benchmark.sh): each builds one binary from the Go module proxy into a cache
# directory per version, through a throwaway main module.
#
# go_cached NAME VERSION BINARY DEFAULT_CACHE [OUT_DIR]
#   If OUT_DIR (default DEFAULT_CACHE/VERSION) already holds BINARY, prints its path and exits
#   the script. Otherwise holds a lock on OUT_DIR (a second run waits, then finds it built),
#   sets OUT_DIR and BIN, exports a static, module-mode Go build environment, and leaves the
#   shell in a fresh, empty OUT_DIR/src for the throwaway module. Needs `log` and `die`.
go_cached() {
    local name=$1 version=$2 binary=$3 cache=$4 out=${5:-}
    command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
    command -v go >/dev/null 2>&1 || die "go not found in PATH or /usr/local/go/bin"
    OUT_DIR="${out:-$cache/$version}"
    mkdir -p "$OUT_DIR"
    OUT_DIR="$(cd "$OUT_DIR" && pwd)"
    BIN="$OUT_DIR/$binary"
    if [[ -x "$BIN" ]]; then
        printf '%s\n' "$BIN"
        exit 0
    fi
    exec 9>"$OUT_DIR/.lock"
    if ! flock -n 9; then
        log "another build of $name $version is running; waiting for its lock..."
        flock 9
    fi
    if [[ -x "$BIN" ]]; then
        printf '%s\n' "$BIN"
        exit 0
    fi
    export CGO_ENABLED=0 GOWORK=off
    export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
    rm -rf "$OUT_DIR/src"
    mkdir -p "$OUT_DIR/src"
    cd "$OUT_DIR/src"
}

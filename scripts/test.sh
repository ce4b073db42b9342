#!/usr/bin/env bash
# Every test of the workspace: formatting, lints, unit, property, integration (real NetHouse
# processes, real network namespaces with Debian's CNI plugins). Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# A one-off build gains nothing from incremental state, which would add gigabytes to the tree.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# A full disk fails deep inside some C build with an unrelated-looking message; say it up front.
mkdir -p target
free_mb=$(df -Pm target | awk 'NR == 2 { print $4 }')
if [ "${free_mb:-0}" -lt 6144 ]; then
  echo "test.sh: warning: ${free_mb} MB free under target/; a fresh build needs about 5 GB" >&2
fi
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Every .rs file is compiled by some target: a file no `mod` declares would silently never run.
# (The same clippy run again, fresh, so it only prints what it compiled.)
cargo clippy --all-targets --message-format=json -- -D warnings 2>/dev/null | python3 scripts/check-module-tree.py
# The plugin binary links neither reqwest nor tokio: nethouse-api's `client` feature stays off for it.
cni_deps=$(cargo tree -p nethouse-cni -e normal --target x86_64-unknown-linux-gnu)
if grep -E 'reqwest|tokio' <<<"$cni_deps"; then echo "test.sh: nethouse-cni depends on the crates above" >&2; exit 1; fi
# The e2e tests run the workspace's binaries (nethouse-cni through Debian's bridge plugin).
cargo build -p nethouse -p nethouse-cni -p nethouse-location-controller -p nethouse-e2e
# Release builds of the same: the images of the real-node installs are made of them, and the
# tests that time NetHouse under load (the etcd chaos test) run the newest build, this one.
cargo build --release --locked -p nethouse -p nethouse-scheduler-extender \
  -p nethouse-location-controller
# The upstream Kubernetes binaries: built once from the Go module proxy, then cached.
bash tests/harness/build-k8s.sh >/dev/null
# nethouse-cni as it ships (static): the CNI tests run that binary, the one runtimes will run.
NETHOUSE_CNI_BIN=$(./scripts/build-cni-static.sh)
export NETHOUSE_CNI_BIN
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

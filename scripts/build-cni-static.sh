#!/usr/bin/env bash
# Builds nethouse-cni as it ships: statically linked, not position-independent.
#
# The DaemonSet copies this binary onto every host, whose C library is not the image's; a static
# binary runs on any of them, as the containernetworking plugins do. It also starts faster —
# no dynamic loader and no relocations to apply — which a runtime pays on every pod start
# (BENCHMARKS.md, nethouse-cni). `--target` keeps these flags off build scripts and proc-macros,
# which must stay dynamic.
#
# Prints the binary's absolute path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
var=CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
export "$var"="-C target-feature=+crt-static -C relocation-model=static"
# Either of these would override the per-target flags above.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
# No debug info in the shipped binary (symbols stay, for backtraces): it is copied onto every host,
# and this second release tree, aws-lc included, is then a fraction of the size.
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo
cargo build --release --locked --quiet -p nethouse-cni --bin nethouse-cni --target "$target" >&2
bin="target/$target/release/nethouse-cni"
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
  echo "build-cni-static: $bin is dynamically linked" >&2
  exit 1
fi
echo "$PWD/$bin"

#!/usr/bin/env bash
# Builds nethouse-cni as it ships: statically linked against musl, not position-independent.
#
# The DaemonSet copies this binary onto every host, whose C library is not the image's; a static
# binary runs on any of them, as the containernetworking plugins do. A runtime also pays the
# plugin's start-up on every ADD and DEL, and the start-up is why this is musl and not glibc:
# glibc's start-up (static or dynamic) probes the CPU's cache geometry with dozens of CPUID
# instructions, and on a virtual machine every CPUID traps to the hypervisor — 6.7 µs each on
# the machines here, about 0.5 ms per process (BENCHMARKS.md, nethouse-cni). musl does not probe.
# No dynamic loader and no relocations to apply save the rest. `--target` keeps these flags off
# build scripts and proc-macros, which must stay dynamic.
#
# The musl standard library comes from rustup (`rustup target add`) and aws-lc's C code is
# compiled with Debian's musl-gcc (musl-tools). NETHOUSE_CNI_LIBC chooses:
#   unset  musl, or — where rustup cannot fetch the target or musl-gcc is missing — a static glibc
#          build, with a warning (make test and make bench on a machine without that access);
#   musl   musl or fail (the image: what ships must be what the README describes);
#   glibc  the static glibc build.
#
# Prints the binary's absolute path.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
arch=${host%%-*}
choice=${NETHOUSE_CNI_LIBC:-}
case "$choice" in
  "" | musl | glibc) ;;
  *)
    echo "build-cni-static: NETHOUSE_CNI_LIBC must be musl or glibc, not '$choice'" >&2
    exit 2
    ;;
esac

# Why musl cannot be had here, or nothing.
musl_missing() {
  if ! command -v musl-gcc >/dev/null 2>&1; then
    echo "musl-gcc not found (Debian package musl-tools; scripts/install-deps.sh installs it)"
  elif ! rustup target list --installed 2>/dev/null | grep -x "$1" >/dev/null &&
    ! timeout 300 rustup target add "$1" >&2; then
    echo "could not add the Rust target $1"
  fi
}

libc=${choice:-musl}
if [ "$libc" = musl ]; then
  target="$arch-unknown-linux-musl"
  why=$(musl_missing "$target")
  if [ -n "$why" ]; then
    if [ "$choice" = musl ]; then
      echo "build-cni-static: $why (NETHOUSE_CNI_LIBC=musl)" >&2
      exit 1
    fi
    echo "build-cni-static: warning: $why; building against glibc instead" >&2
    libc=glibc
  fi
fi
if [ "$libc" = glibc ]; then
  target=$host
fi

upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${upper}_RUSTFLAGS"="-C target-feature=+crt-static -C relocation-model=static"
cc_target=$(echo "$target" | tr '-' '_')
if [ "$libc" = musl ]; then
  export "CC_$cc_target"=musl-gcc
fi
# aws-lc without its load-time constructor, whose CPU detection is more CPUID traps on every start
# (57 µs here) although most calls never use TLS; every TLS client in the binary calls
# nethouse_api::init_crypto() before it is built.
export "CFLAGS_$cc_target"="-DBORINGSSL_NO_STATIC_INITIALIZER"
# Either of these would override the per-target flags above.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
# No debug info in the shipped binary (symbols stay, for backtraces): it is copied onto every host,
# and this second release tree, aws-lc included, is then a fraction of the size.
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo
cargo build --release --locked --quiet -p nethouse-cni --bin nethouse-cni --target "$target" >&2
bin="target/$target/release/nethouse-cni"
# (grep without -q: under pipefail an early exit could SIGPIPE readelf and hide the match)
if readelf -l "$bin" | grep 'Requesting program interpreter' >/dev/null; then
  echo "build-cni-static: $bin is dynamically linked" >&2
  exit 1
fi
echo "$PWD/$bin"

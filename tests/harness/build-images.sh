#!/usr/bin/env bash
# Builds the real nodes' container images without a daemon or a registry, as docker-archive
# tarballs that `ctr -n k8s.io images import` loads:
#   pause.tar    nethouse.local/pause:1    containerd's sandbox_image: blocks until SIGTERM/SIGINT
#   busybox.tar  nethouse.local/busybox:1  a static toolbox (sh, sleep, ping, nc, wget) for pods
# Both are Debian's busybox-static (scripts/install-deps.sh) in one layer; pause is that layer
# with a shell loop as its entrypoint, which is all a pause container has to do.
#
# Usage: tests/harness/build-images.sh OUT_DIR
# Prints OUT_DIR on stdout. Deterministic: the same busybox gives the same image IDs.
set -euo pipefail

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

OUT="${1:?usage: build-images.sh OUT_DIR}"
BUSYBOX=/bin/busybox
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX not found: install Debian's busybox-static (scripts/install-deps.sh)"
# A dynamic busybox would need the host's libc inside the image.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is not static: install busybox-static, not busybox"
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ---- the layer: busybox and one link per applet, plus the mount points runc expects --------
root="$work/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/var"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
layer="$work/layer.tar"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$layer" .
diff_id="$(sha256sum "$layer" | cut -d' ' -f1)"

# image NAME TAG ENTRYPOINT_JSON CMD_JSON: writes $OUT/NAME.tar
image() {
    local name="$1" ref="$2" entrypoint="$3" cmd="$4"
    local dir="$work/$name"
    mkdir -p "$dir/$diff_id"
    cp "$layer" "$dir/$diff_id/layer.tar"
    cat > "$dir/config.json" <<EOF
{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/bin"],"Entrypoint":$entrypoint,"Cmd":$cmd,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"tests/harness/build-images.sh"}]}
EOF
    local config_id
    config_id="$(sha256sum "$dir/config.json" | cut -d' ' -f1)"
    mv "$dir/config.json" "$dir/$config_id.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
        "$config_id" "$ref" "$diff_id" > "$dir/manifest.json"
    # Entries named without "./": readers look the manifest up by its bare name.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir" -cf "$OUT/$name.tar.tmp" \
        manifest.json "$config_id.json" "$diff_id"
    mv -f "$OUT/$name.tar.tmp" "$OUT/$name.tar"
    log "$ref -> $OUT/$name.tar (config sha256:$config_id)"
}

image pause nethouse.local/pause:1 \
    '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]' 'null'
image busybox nethouse.local/busybox:1 'null' '["/bin/sh"]'

printf '%s\n' "$OUT"

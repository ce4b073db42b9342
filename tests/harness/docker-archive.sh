# Sourced by the image scripts: writes a one-layer docker-archive tarball, the format
# `ctr -n k8s.io images import` loads, without a daemon or a registry. Deterministic: the same
# files give the same image ID (names sorted, owner root, every mtime the epoch).
#
#   docker_archive ROOTFS REF CONFIG_JSON OUT_TAR
# ROOTFS: the layer's directory; REF: e.g. nethouse.local/nethouse:test; CONFIG_JSON: the
# image config's "config" object ({"Env":[...],"Entrypoint":[...],"User":"65532:65532"}).

docker_archive() {
    local rootfs="$1" ref="$2" config="$3" out="$4"
    local dir arch diff_id config_id
    dir="$(mktemp -d)"
    case "$(uname -m)" in
        x86_64) arch=amd64 ;;
        aarch64) arch=arm64 ;;
        *) arch="$(uname -m)" ;;
    esac
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$dir/layer.tar" .
    diff_id="$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)"
    mkdir -p "$dir/$diff_id"
    mv "$dir/layer.tar" "$dir/$diff_id/layer.tar"
    printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"tests/harness"}]}\n' \
        "$arch" "$config" "$diff_id" > "$dir/config.json"
    config_id="$(sha256sum "$dir/config.json" | cut -d' ' -f1)"
    mv "$dir/config.json" "$dir/$config_id.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
        "$config_id" "$ref" "$diff_id" > "$dir/manifest.json"
    # Entries named without "./": readers look the manifest up by its bare name.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir" -cf "$out.tmp" \
        manifest.json "$config_id.json" "$diff_id"
    mv -f "$out.tmp" "$out"
    rm -rf "$dir"
    printf '[images] %s -> %s (%s MB, config sha256:%s)\n' "$ref" "$out" \
        "$(($(stat -c %s "$out") / 1048576))" "$config_id" >&2
}

# A minimal /etc and the directories runc expects, for an image of static or copied binaries;
# 65532 is the distroless `nonroot` user the manifests run as.
base_rootfs() {
    local root="$1"
    mkdir -p "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/var" "$root/home/nonroot"
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
        > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
}

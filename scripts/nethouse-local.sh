#!/usr/bin/env bash
# Runs a local NetHouse with two network zones (z1 dual-stack, z2 IPv4), shows what an
# operator sees, and keeps serving until Ctrl-C. Everything lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p nethouse -p nethouse-cni --quiet
bin=target/release/nethouse
cni=target/release/nethouse-cni
work=$(mktemp -d /tmp/nethouse-local.XXXXXX)
node_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
ctrl_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'node %s\ncontroller %s\n' "$node_token" "$ctrl_token" > "$work/auth"
printf '%s' "$ctrl_token" > "$work/controller.token"
printf '%s' "$node_token" > "$work/node.token"

"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --auth-file "$work/auth" \
    --ready-file "$work/address" --default-cooldown 30s 2> "$work/nethouse.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; echo; echo "stopped; state kept in $work"' EXIT
for _ in $(seq 100); do [ -s "$work/address" ] && break; sleep 0.1; done
[ -s "$work/address" ] || { cat "$work/nethouse.log"; exit 1; }

export NETHOUSE_SERVER="http://$(cat "$work/address")" NETHOUSE_TOKEN_FILE="$work/controller.token"
"$bin" subnet add --zone z1 --cidr 10.81.0.0/24 --route 0.0.0.0/0 --dns-server 10.81.0.10 -o json >/dev/null
"$bin" subnet add --zone z1 --cidr fd00:81::/64 -o json >/dev/null
"$bin" subnet add --zone z2 --cidr 10.82.0.0/24 --exclude 10.82.0.2-10.82.0.9 --cooldown 5m -o json >/dev/null

# What a node's container runtime does for each pod: run the CNI plugin (here IPAM only, as
# the bridge or macvlan plugin would run it) with the pod identity in CNI_ARGS and the pod's
# annotations in runtimeConfig.
cni_add() { # node zone container namespace pod fixed
    local conf
    conf=$(printf '{"cniVersion":"1.0.0","name":"demo","ipam":{"type":"nethouse-cni","servers":["%s"],"tokenFile":"%s","zone":"%s","node":"%s","logFile":"%s"},"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"nethouse.io/fixed-ip":"%s"}}}' \
        "$NETHOUSE_SERVER" "$work/node.token" "$2" "$1" "$work/cni.log" "$6")
    printf '%s' "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID="$3" CNI_NETNS=/var/run/netns/demo CNI_IFNAME=eth0 \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$4;K8S_POD_NAME=$5" "$cni"
    echo
}
echo "== redis-0 (fixed) starts on node-a, zone z1"; cni_add node-a z1 c0ffee01 db redis-0 true
echo "== redis-1 (fixed) starts on node-c, zone z2"; cni_add node-c z2 c0ffee02 db redis-1 true
echo "== web-7d9 (ordinary) starts on node-b";       cni_add node-b z1 beef0001 web web-7d9 false
echo "== node-a dies without CNI DEL; redis-0 is recreated on node-b: same addresses"
cni_add node-b z1 c0ffee03 db redis-0 true
echo

echo "== nethouse subnet list";  "$bin" subnet list
echo; echo "== nethouse zone list";  "$bin" zone list
echo; echo "== nethouse lease list"; "$bin" lease list
echo
echo "NetHouse is serving at $NETHOUSE_SERVER (state in $work). Try, in another shell:"
echo "  export NETHOUSE_SERVER=$NETHOUSE_SERVER NETHOUSE_TOKEN_FILE=$work/controller.token"
echo "  $bin lease show db/redis-0      $bin lease release db/redis-1      curl -s \$NETHOUSE_SERVER/metrics"
if [ "${NETHOUSE_LOCAL_ONESHOT:-0}" = 1 ]; then exit 0; fi
echo "Ctrl-C stops it."
wait $server

#!/usr/bin/env bash
# Runs a local NetHouse with two network zones (z1 dual-stack, z2 IPv4), shows what an
# operator sees, and keeps serving until Ctrl-C. Everything lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p nethouse --quiet
bin=target/release/nethouse
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

# What a node's CNI plugin does on ADD for a StatefulSet pod (fixed) and for a plain pod.
alloc() {
    curl -sf -X POST "$NETHOUSE_SERVER/v1/leases" -H "Authorization: Bearer $node_token" -d "$1" >/dev/null
}
alloc '{"zone":"z1","kind":"fixed","owner":{"cluster":"default","namespace":"db","pod":"redis-0"},"attachment":{"container_id":"c0ffee01","ifname":"eth0","node":"node-a"}}'
alloc '{"zone":"z2","kind":"fixed","owner":{"cluster":"default","namespace":"db","pod":"redis-1"},"attachment":{"container_id":"c0ffee02","ifname":"eth0","node":"node-c"}}'
alloc '{"zone":"z1","kind":"ephemeral","attachment":{"container_id":"beef0001","ifname":"eth0","node":"node-b"}}'
# redis-0's node dies; the pod is recreated on node-b with a new sandbox: same addresses.
alloc '{"zone":"z1","kind":"fixed","owner":{"cluster":"default","namespace":"db","pod":"redis-0"},"attachment":{"container_id":"c0ffee03","ifname":"eth0","node":"node-b"}}'

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

#!/usr/bin/env bash
# Idle memory per connection of this checkout against another revision,
# interleaved over ROUNDS rounds (a fresh mqttgate per round), with the
# gateway settings and ACL of run.sh and the same Mosquitto behind both:
#
#   bash bench/idle-compare.sh d4bd1a2          # ROUNDS=5 IDLE_N=8000
#
# Prints KiB per idle connection, one line per round and target.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
base="${1:?usage: idle-compare.sh REVISION}"
ROUNDS="${ROUNDS:-5}"
IDLE_N="${IDLE_N:-8000}"
ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d /tmp/mqttgate-idle-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  git worktree remove --force "$work/base-src" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

git worktree add -q --detach "$work/base-src" "$base"
(cd "$work/base-src" && go build -o "$work/mqttgate-base" ./cmd/mqttgate)
go build -o "$work/mqttgate-head" ./cmd/mqttgate
go build -o "$work/bench" ./bench
"$work/mqttgate-head" certs init "$work/pki" >/dev/null
pki="$work/pki"

printf 'allow_anonymous true\npersistence false\nlistener 18830 127.0.0.1\n' > "$work/mosquitto.conf"
taskset -c 1 mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=("$!")
"$work/mqttgate-head" passwd -c -b "$work/passwd" bench bench-pw >/dev/null
{
  for i in $(seq 1 9990); do printf 'user user%d\ntopic readwrite data/user%d/#\n' "$i" "$i"; done
  for i in $(seq 1 9); do printf 'pattern read devices/%%c/cmd/%d/#\n' "$i"; done
  printf 'user bench\ntopic readwrite bench/#\n'
} > "$work/acl"

for r in $(seq 1 "$ROUNDS"); do
  for which in base head; do
    env GOMAXPROCS=1 MQTTGATE_BACKEND=127.0.0.1:18830 MQTTGATE_LISTEN_TLS=127.0.0.1:18833 \
      MQTTGATE_TLS_CERT="$pki/server.pem" MQTTGATE_TLS_KEY="$pki/server-key.pem" \
      MQTTGATE_AUTHN=password MQTTGATE_PASSWORD_FILE="$work/passwd" MQTTGATE_ACL_FILE="$work/acl" \
      MQTTGATE_MAX_CONNECTIONS=200000 MQTTGATE_FLAPPING_MAX_DISCONNECTS=0 MQTTGATE_LOG_LEVEL=warn \
      taskset -c 0 "$work/mqttgate-$which" >"$work/gate-$which-$r.log" 2>&1 &
    gate=$!
    for _ in $(seq 1 100); do # bounded: until the listener answers
      (exec 3<>/dev/tcp/127.0.0.1/18833) 2>/dev/null && break
      sleep 0.1
    done
    taskset -c 1 "$work/bench" idle -name "$which" -test idle -repeat "$r" -pid "$gate" \
      -target tls://127.0.0.1:18833 -ca "$pki/ca.pem" -user bench -pass bench-pw -n "$IDLE_N" \
      -out "$work/$which-$r.json" 2>/dev/null
    kill "$gate"; wait "$gate" 2>/dev/null || true
    printf '%s round %d: %s KiB per idle connection\n' "$which" "$r" \
      "$(grep -o '"KiBPerConn": [0-9.]*' "$work/$which-$r.json" | cut -d' ' -f2)"
  done
done

#!/usr/bin/env bash
# Runs the whole comparison on loopback and prints the ratio table:
# Mosquitto direct (plaintext, the floor), Mosquitto's own TLS, HAProxy
# (mode tcp, TLS termination, no inspection) and mqttgate (TLS, password
# authentication, a 10,000-rule ACL) in front of the same Mosquitto, with
# the same certificates and workload, interleaved over REPEATS rounds.
# The system under test runs on CPU 0, broker and load generator on CPU 1.
#
#   bash bench/run.sh            # results in bench/results/, table on stdout
#   REPEATS=1 DURATION=5s IDLE_N=2000 bash bench/run.sh   # a quick run
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
REPEATS="${REPEATS:-5}"
DURATION="${DURATION:-10s}"
IDLE_N="${IDLE_N:-8000}"   # mqttgate holds two descriptors per connection; see README for the limit
LAT_RATE="${LAT_RATE:-5000}"

missing=()
for pair in mosquitto:mosquitto haproxy:haproxy openssl:openssl taskset:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d /tmp/mqttgate-bench-XXXXXX)"
out="bench/results"
rm -rf "$out"; mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

go build -o "$work/mqttgate" ./cmd/mqttgate
go build -o "$work/bench" ./bench
B="$work/bench"

# Certificates: the development PKI (ECDSA P-256) and an RSA-2048 pair.
"$work/mqttgate" certs init "$work/pki" >/dev/null
pki="$work/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/rsa-key.pem" -out "$work/rsa.pem" 2>/dev/null
cat "$pki/server.pem" "$pki/server-key.pem" > "$work/haproxy-ecdsa.pem"
cat "$work/rsa.pem" "$work/rsa-key.pem" > "$work/haproxy-rsa.pem"

cat > "$work/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
max_queued_messages 100000
set_tcp_nodelay true
user root
listener 18830 127.0.0.1
listener 18831 127.0.0.1
certfile $pki/server.pem
keyfile $pki/server-key.pem
CONF
taskset -c 1 mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosq=$!; pids+=("$mosq")

cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 9900  # two descriptors per connection under the 20,000 descriptor limit here
  tune.ssl.default-dh-param 2048
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend ecdsa
  bind 127.0.0.1:18832 ssl crt $work/haproxy-ecdsa.pem
  default_backend mosquitto
frontend rsa
  bind 127.0.0.1:18842 ssl crt $work/haproxy-rsa.pem
  default_backend mosquitto
backend mosquitto
  server m 127.0.0.1:18830
CONF
taskset -c 0 haproxy -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
hap=$!; pids+=("$hap")

# mqttgate: password authentication and an ACL of 10,000 rules, most per
# user, some patterns with placeholders.
"$work/mqttgate" passwd -c -b "$work/passwd" bench bench-pw >/dev/null
{
  for i in $(seq 1 9990); do printf 'user user%d\ntopic readwrite data/user%d/#\n' "$i" "$i"; done
  for i in $(seq 1 9); do printf 'pattern read devices/%%c/cmd/%d/#\n' "$i"; done
  printf 'user bench\ntopic readwrite bench/#\n'
} > "$work/acl"
gate() { # port cert key [env...]
  local port=$1 cert=$2 key=$3; shift 3
  env "$@" GOMAXPROCS=1 MQTTGATE_BACKEND=127.0.0.1:18830 MQTTGATE_LISTEN_TLS="127.0.0.1:$port" MQTTGATE_TLS_CERT="$cert" MQTTGATE_TLS_KEY="$key" \
    MQTTGATE_AUTHN=password MQTTGATE_PASSWORD_FILE="$work/passwd" MQTTGATE_ACL_FILE="$work/acl" \
    MQTTGATE_MAX_CONNECTIONS=200000 MQTTGATE_FLAPPING_MAX_DISCONNECTS=0 MQTTGATE_LOG_LEVEL=warn \
    taskset -c 0 "$work/mqttgate" >"$work/mqttgate-$port.log" 2>&1 &
  pids+=("$!")
}
gate 18833 "$pki/server.pem" "$pki/server-key.pem" MQTTGATE_PPROF_ADDR=127.0.0.1:16060; gate_ecdsa=$!
gate 18843 "$work/rsa.pem" "$work/rsa-key.pem"; gate_rsa=$!
gate 18853 "$pki/server.pem" "$pki/server-key.pem" MQTTGATE_LISTEN_WSS=127.0.0.1:18854; gate_wss=$! # MQTT over WebSocket
sleep 1 # the listeners come up; each target is also checked by its first connection

run() { # name test pid target ca [args]
  local name=$1 test=$2 pid=$3 target=$4 ca=$5; shift 5
  local auth=()
  [[ "$name" == mqttgate* ]] && auth=(-user bench -pass bench-pw)
  echo "== $name $test (round $r)" >&2
  taskset -c 1 "$B" "$@" -name "$name" -test "$test" -repeat "$r" -pid "$pid" -target "$target" -ca "$ca" "${auth[@]}" \
    -out "$out/$name-$test-$r.json"
}
direct=(direct "$mosq" tcp://127.0.0.1:18830 "")
mtls=(mosquitto-tls "$mosq" tls://127.0.0.1:18831 "$pki/ca.pem")
hapx=(haproxy "$hap" tls://127.0.0.1:18832 "$pki/ca.pem")
mgate=(mqttgate "$gate_ecdsa" tls://127.0.0.1:18833 "$pki/ca.pem")
"$B" aesgcm -test aesgcm -out "$out/aesgcm.json"
for r in $(seq 1 "$REPEATS"); do
  for t in direct mtls hapx mgate; do
    unset -n T 2>/dev/null || true; declare -n T=$t
    run "${T[0]}" qos0-64 "${T[1]}" "${T[2]}" "${T[3]}" load -size 64 -duration "$DURATION"
    run "${T[0]}" qos0-16k "${T[1]}" "${T[2]}" "${T[3]}" load -size 16384 -duration "$DURATION"
    run "${T[0]}" latency "${T[1]}" "${T[2]}" "${T[3]}" load -size 64 -duration "$DURATION" -rate "$LAT_RATE"
  done
  for t in hapx mgate; do
    unset -n T 2>/dev/null || true; declare -n T=$t
    run "${T[0]}" hs-ecdsa "${T[1]}" "${T[2]}" "${T[3]}" handshake -n 3000 -parallel 8
    run "${T[0]}" hs-resume "${T[1]}" "${T[2]}" "${T[3]}" handshake -n 3000 -parallel 8 -resume
  done
  # Go's own client offer (X25519MLKEM768 first): the post-quantum cost,
  # reported beside the table; OpenSSL 3.0 cannot negotiate it.
  run mqttgate hs-ecdsa-pq "$gate_ecdsa" tls://127.0.0.1:18833 "$pki/ca.pem" handshake -n 3000 -parallel 8 -groups go
  run haproxy hs-rsa "$hap" tls://127.0.0.1:18842 "$work/rsa.pem" handshake -n 1000 -parallel 8
  run mqttgate hs-rsa "$gate_rsa" tls://127.0.0.1:18843 "$work/rsa.pem" handshake -n 1000 -parallel 8
done
for r in $(seq 1 "$REPEATS"); do
  run mqttgate-wss qos0-64 "$gate_wss" wss://127.0.0.1:18854 "$pki/ca.pem" load -size 64 -duration "$DURATION"
done
for t in hapx mgate; do
  unset -n T 2>/dev/null || true; declare -n T=$t
  r=1 run "${T[0]}" idle "${T[1]}" "${T[2]}" "${T[3]}" idle -n "$IDLE_N"
done
r=1 run mqttgate-wss idle "$gate_wss" wss://127.0.0.1:18854 "$pki/ca.pem" idle -n "$IDLE_N"

# Profiles of mqttgate under the qos0-64 load.
taskset -c 1 "$B" load -target tls://127.0.0.1:18833 -ca "$pki/ca.pem" -user bench -pass bench-pw -size 64 -duration 12s -out /dev/null 2>/dev/null &
loadpid=$!
sleep 2 # past the ramp-up
go tool pprof -top -nodecount=25 -seconds 8 http://127.0.0.1:16060/debug/pprof/profile > "$out/profile-cpu.txt" 2>/dev/null || true
go tool pprof -top -sample_index=alloc_space -nodecount=15 http://127.0.0.1:16060/debug/pprof/allocs > "$out/profile-allocs.txt" 2>/dev/null || true
wait "$loadpid" || true

{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "# $(haproxy -v | head -1 | cut -d' ' -f1-3), $(openssl version | cut -d' ' -f1-2), $(mosquitto -h 2>/dev/null | head -1 | cut -d' ' -f1-3), $(go version | cut -d' ' -f3)"
  "$B" report "$out"/*.json
} | tee "$out/table.md"

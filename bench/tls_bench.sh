#!/usr/bin/env bash
# TLS benchmark: Petrel and mosquitto side by side, same certificates (an
# EC P-256 server certificate), same limits, one after the other, each
# broker pinned to CPU 0 and the load tool to CPU 1. mosquitto gets
# set_tcp_nodelay true, as in the mqttbench comparison runs (without it, mosquitto managed
# only ~90 handshakes/s here: its small writes wait on Nagle's algorithm).
#
#   cmake -S . -B build && cmake --build build
#   bench/tls_bench.sh [BUILD_DIR] [RUNS]
#
# Prints handshakes/s (MQTT CONNECT/CONNACK included, no session resumption)
# and QoS 1 1->1 messages/s over TLS with a window of 100.
set -euo pipefail
BUILD=${1:-build}
RUNS=${2:-3}
PETREL=$(realpath "$BUILD/petrel")
TOOL=$(realpath "$BUILD/bench/tls_bench")
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
HS_SECONDS=${HS_SECONDS:-10}
HS_PARALLEL=${HS_PARALLEL:-4}
MESSAGES=${MESSAGES:-200000}
PORT_P=${PORT_P:-18883}
PORT_M=${PORT_M:-18884}

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -out ca.pem -days 30 -subj /CN=bench-ca 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
  -out server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile san.ext -out server.pem 2>/dev/null

cat > petrel.yaml <<EOC
log_level: warning
listeners:
  - address: 127.0.0.1
    port: $PORT_P
    allow_anonymous: true
    tls:
      cert_file: $work/server.pem
      key_file: $work/server.key
limits:
  max_inflight: 100
  max_queued_messages: 100000
  max_connections: 0
  max_keepalive: 300
EOC
cat > mosquitto.conf <<EOC
listener $PORT_M 127.0.0.1
cafile $work/ca.pem
certfile $work/server.pem
keyfile $work/server.key
allow_anonymous true
max_inflight_messages 100
max_queued_messages 100000
user root
log_dest none
set_tcp_nodelay true
EOC

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# Broker CPU time (user + system) in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# Runs the load tool and adds the broker's CPU time per operation: on a
# shared 2-core machine the client side (TLS verification on one core) can
# be the limit, so CPU per handshake / per message is the steadier number.
measure() {
  local name=$1 pid=$2 ops_field=$3
  shift 3
  local t0 out t1
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 "$TOOL" "$@")
  t1=$(cpu_ticks "$pid")
  echo "$out" | awk -v n="$name" -v f="$ops_field" -v ticks=$((t1 - t0)) -v hz="$HZ" \
    '{ printf "%s: %s; broker CPU %.1f us per op\n", n, $0, ticks / hz * 1e6 / $f }'
}

run() {
  local name=$1 port=$2
  shift 2
  taskset -c 0 "$@" &
  local pid=$!
  wait_port "$port"
  for i in $(seq "$RUNS"); do
    measure "$name run $i" "$pid" 2 handshake --port "$port" --cafile ca.pem \
      --parallel "$HS_PARALLEL" --seconds "$HS_SECONDS"
    measure "$name run $i" "$pid" 3 qos1 --port "$port" --cafile ca.pem \
      --messages "$MESSAGES" --window 100 --payload 64
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "openssl: $(openssl version); mosquitto: $($MOSQUITTO -h 2>/dev/null | head -1)"
run petrel "$PORT_P" "$PETREL" --config petrel.yaml
run mosquitto "$PORT_M" "$MOSQUITTO" -c mosquitto.conf

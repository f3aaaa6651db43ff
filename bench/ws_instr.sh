#!/usr/bin/env bash
# Broker instructions per message, MQTT over TCP against MQTT over
# WebSocket (callgrind counts do not drift with the machine's load, which
# rates on a shared VM do): Petrel runs under callgrind with a plain and a
# WebSocket listener, bench/petrel_loadgen sends N1 and then N2 messages per
# publisher over each transport (a fresh broker for each run), and the
# difference of the broker's instruction counts divided by the difference
# of the message counts is its cost per message, start-up and connections
# excluded.
#
# usage: bench/ws_instr.sh ["loadgen arguments"]   (build first)
# env:   BUILD (build), N1 (1000), N2 (6000), PORT (18920; PORT+1 is ws)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${BUILD:-$root/build}
ARGS=${1:-"--qos 0 --payload 1024 --pubs 10 --subs 10"}
N1=${N1:-1000}
N2=${N2:-6000}
PORT=${PORT:-18920}
WS_PORT=$((PORT + 1))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/p.yaml" <<YAML
log_level: warning
listeners:
  - {address: 127.0.0.1, port: $PORT}
  - {address: 127.0.0.1, port: $WS_PORT, websocket: {path: /mqtt}}
persistence: {enabled: false}
mqtt: {sys_interval: 0}
YAML

instructions() {  # transport count -> broker instructions for the whole run
  local t=$1 n=$2 out=$work/cg.$1.$2 pid
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BUILD/petrel" --config "$work/p.yaml" \
    2>"$work/vg.log" & pid=$!
  for _ in $(seq 100); do
    ss -Hltn "sport = :$WS_PORT" | grep -q . && break
    sleep 0.1
  done
  local extra=(--port "$PORT")
  [[ $t == ws ]] && extra=(--port "$WS_PORT" --ws)
  # shellcheck disable=SC2086
  "$BUILD/bench/petrel_loadgen" "${extra[@]}" $ARGS --count "$n" --max-time 600 --drain 60 \
    --client-prefix "i$t$n" | tail -1 | grep -q '"correct":true' || echo "warning: $t $n run not correct" >&2
  kill -INT "$pid"
  wait "$pid" || true
  sed -n 's/^summary: *//p;s/^totals: *//p' "$out" | head -1
}

declare -A ir
for t in tcp ws; do
  for n in "$N1" "$N2"; do
    ir[$t.$n]=$(instructions "$t" "$n")
  done
done
pubs=$(grep -o -- '--pubs [0-9]*' <<<"$ARGS" | awk '{print $2}')
pubs=${pubs:-1}
msgs=$(( (N2 - N1) * pubs ))
tcp=$(( (ir[tcp.$N2] - ir[tcp.$N1]) / msgs ))
ws=$(( (ir[ws.$N2] - ir[ws.$N1]) / msgs ))
echo "loadgen $ARGS, $msgs messages published (difference of --count $N2 and $N1):"
echo "broker instructions per message published: tcp $tcp, ws $ws (ws/tcp $(awk "BEGIN{printf \"%.2f\", $ws/$tcp}"))"

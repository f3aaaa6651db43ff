#!/usr/bin/env bash
# MQTT over WebSocket against MQTT over TCP, on the same broker in the same
# run: bench/petrel_loadgen drives a broker that listens on both (Petrel: a
# plain and a `websocket:` listener; mosquitto, when its build has
# websockets: `listener` and `listener ... protocol websockets`), once per
# transport, alternating (tcp ws tcp ws ...). The broker runs pinned to CPU
# $BROKER_CPU, the tool to $TOOL_CPU; persistence is off, so the runs
# compare the transports and nothing else.
#
# usage: bench/ws_compare.sh [ROUNDS]      (build first: cmake --build build)
# env:   BUILD (build), OUT (dir for results.jsonl), CASES (subset),
#        BROKERS ("petrel mosquitto"), MOSQUITTO (/usr/sbin/mosquitto),
#        PORT (18900; PORT+1 is the WebSocket port)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ROUNDS=${1:-3}
BUILD=${BUILD:-$root/build}
LOADGEN=$BUILD/bench/petrel_loadgen
PETREL=$BUILD/petrel
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
PORT=${PORT:-18900}
WS_PORT=$((PORT + 1))
BROKER_CPU=${BROKER_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}
OUT=${OUT:-$PWD/loadgen-results/ws-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/work"
RESULTS=$OUT/results.jsonl
[[ -x $LOADGEN && -x $PETREL ]] || { echo "build first: cmake --build $BUILD" >&2; exit 1; }

# case | loadgen arguments
ALL_CASES=(
  "qos0_64B_1to1|--qos 0 --payload 64 --duration 6"
  "qos1_64B_1to1|--qos 1 --payload 64 --duration 6"
  "qos0_1KB_10to10|--qos 0 --payload 1024 --pubs 10 --subs 10 --duration 6"
)
declare -A ARGS
ORDER=()
for c in "${ALL_CASES[@]}"; do ARGS[${c%%|*}]=${c#*|}; ORDER+=("${c%%|*}"); done
[[ -n "${CASES:-}" ]] && read -r -a ORDER <<<"$CASES"
read -r -a BROKER_LIST <<<"${BROKERS:-petrel mosquitto}"

pid=""
start_broker() {  # name; false when it cannot do WebSocket
  local name=$1 dir=$OUT/work/$1
  rm -rf "$dir"; mkdir -p "$dir"
  case $name in
    mosquitto)
      cat >"$dir/m.conf" <<CONF
listener $PORT 127.0.0.1
listener $WS_PORT 127.0.0.1
protocol websockets
allow_anonymous true
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
set_tcp_nodelay true
persistence false
log_dest stderr
log_type error
user root
CONF
      taskset -c "$BROKER_CPU" "$MOSQUITTO" -c "$dir/m.conf" 2>"$dir/log" & pid=$! ;;
    petrel)
      cat >"$dir/p.yaml" <<YAML
log_level: warning
listeners:
  - {address: 127.0.0.1, port: $PORT}
  - {address: 127.0.0.1, port: $WS_PORT, websocket: {path: /mqtt}}
limits: {max_inflight: 100, max_queued_messages: 1000000, max_keepalive: 300}
persistence: {enabled: false}
YAML
      taskset -c "$BROKER_CPU" "$PETREL" --config "$dir/p.yaml" 2>"$dir/log" & pid=$! ;;
  esac
  for _ in $(seq 50); do
    if ss -Hltn "sport = :$PORT" | grep -q . && ss -Hltn "sport = :$WS_PORT" | grep -q .; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "broker $name did not start with a WebSocket listener on $WS_PORT:" >&2
  cat "$dir/log" >&2
  stop_broker
  return 1
}
stop_broker() {
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap stop_broker EXIT

for b in "${BROKER_LIST[@]}"; do
  start_broker "$b" || { echo "skipping $b" >&2; continue; }
  for r in $(seq "$ROUNDS"); do
    for c in "${ORDER[@]}"; do
      for t in tcp ws; do
        if [[ $t == ws ]]; then extra=(--port "$WS_PORT" --ws); else extra=(--port "$PORT"); fi
        line=$(taskset -c "$TOOL_CPU" "$LOADGEN" "${extra[@]}" --broker-pid "$pid" --label "$b-$t" \
                 ${ARGS[$c]} --client-prefix "w$r$t" 2>"$OUT/work/$c.$b.$t.$r.log" | tail -1) || true
        echo "{\"case\":\"$c\",\"round\":$r,\"broker\":\"$b\",${line#\{}" >>"$RESULTS"
        printf '[round %d] %-18s %-10s %-3s %s\n' "$r" "$c" "$b" "$t" \
          "$(grep -o '"deliver_rate":[0-9.]*\|"broker_cpu_pct":[0-9.]*\|"lat_p99_us":[0-9.]*\|"correct":[a-z]*' \
             <<<"$line" | tr '\n' ' ')"
      done
    done
  done
  stop_broker
done

/usr/bin/python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["case"], r["broker"]), {}).setdefault(r.get("transport", "?"), []).append(r)
print("\n| case | broker | tcp msg/s | ws msg/s | ws/tcp | broker CPU µs/msg tcp / ws | p99 µs tcp / ws | correct |")
print("|---|---|---|---|---|---|---|---|")
for (case, broker), t in by.items():
    def med(rs, k):
        return statistics.median(x.get(k) or 0 for x in rs)
    def cpu_per_msg(rs):
        return statistics.median((x.get("broker_cpu_pct") or 0) * 1e4 / max(x.get("deliver_rate") or 1, 1) for x in rs)
    tcp, ws = t.get("tcp", []), t.get("ws", [])
    if not tcp or not ws:
        continue
    rt, rw = med(tcp, "deliver_rate"), med(ws, "deliver_rate")
    ok = all(x.get("correct") for x in tcp + ws)
    print(f"| {case} | {broker} | {rt:,.0f} | {rw:,.0f} | {rw / rt if rt else 0:.2f} | "
          f"{cpu_per_msg(tcp):.2f} / {cpu_per_msg(ws):.2f} | {med(tcp, 'lat_p99_us'):,.0f} / "
          f"{med(ws, 'lat_p99_us'):,.0f} | {ok} |")
PY

#!/usr/bin/env bash
# Side-by-side runs of bench/petrel_loadgen against Petrel and mosquitto, for
# the cases the standard comparison cannot express: QoS 1 to ONLINE durable
# subscribers (the cost of "acknowledged means stored") and shared
# subscription work queues. Brokers alternate (A B A B ...), each run on a
# freshly started broker pinned to CPU $BROKER_CPU, the tool on $TOOL_CPU.
#
# usage: bench/loadgen_compare.sh [ROUNDS]     (build first: cmake --build build)
# env:   BUILD (build), OUT (dir for results.jsonl), CASES (subset, see below),
#        MOSQUITTO (/usr/sbin/mosquitto), PORT (18890)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ROUNDS=${1:-3}
BUILD=${BUILD:-$root/build}
LOADGEN=$BUILD/bench/petrel_loadgen
PETREL=$BUILD/petrel
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
PORT=${PORT:-18890}
BROKER_CPU=${BROKER_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}
OUT=${OUT:-$PWD/loadgen-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/work"
RESULTS=$OUT/results.jsonl
[[ -x $LOADGEN && -x $PETREL ]] || { echo "build first: cmake --build $BUILD" >&2; exit 1; }

# case | loadgen arguments
ALL_CASES=(
  "durable_qos1_1to1|--qos 1 --durable --duration 6"
  "durable_qos1_10to10|--qos 1 --durable --pubs 10 --subs 10 --duration 6"
  "shared10_qos1|--qos 1 --subs 10 --shared 1 --proto 5 --duration 6"
  "shared10_qos1_kill|--qos 1 --subs 10 --shared 1 --proto 5 --duration 6 --kill-member-after 200"
)
# broker label | how to start it (persistence mode)
BROKERS=(mosquitto petrel-fsync petrel-periodic petrel-off)
declare -A ARGS
ORDER=()
for c in "${ALL_CASES[@]}"; do ARGS[${c%%|*}]=${c#*|}; ORDER+=("${c%%|*}"); done
[[ -n "${CASES:-}" ]] && read -r -a ORDER <<<"$CASES"

pid=""
start_broker() {  # label
  local label=$1 dir=$OUT/work/$1
  rm -rf "$dir"; mkdir -p "$dir"
  case $label in
    mosquitto)
      cat >"$dir/m.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
set_tcp_nodelay true
persistence true
persistence_location $dir/
autosave_interval 1800
log_dest stderr
log_type error
user root
CONF
      taskset -c "$BROKER_CPU" "$MOSQUITTO" -c "$dir/m.conf" 2>"$dir/log" & pid=$! ;;
    petrel-*)
      local mode=${label#petrel-} enabled=true sync=fsync
      [[ $mode == off ]] && enabled=false
      [[ $mode == periodic ]] && sync=periodic
      cat >"$dir/p.yaml" <<YAML
log_level: warning
listeners: [{address: 127.0.0.1, port: $PORT}]
limits: {max_inflight: 100, max_queued_messages: 1000000, max_keepalive: 300}
persistence: {enabled: $enabled, sync: $sync, dir: $dir/data}
YAML
      taskset -c "$BROKER_CPU" "$PETREL" --config "$dir/p.yaml" 2>"$dir/log" & pid=$! ;;
  esac
  for _ in $(seq 50); do
    ss -Hltn "sport = :$PORT" | grep -q . && return 0
    sleep 0.1
  done
  echo "broker $label did not start" >&2; return 1
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

for r in $(seq "$ROUNDS"); do
  for c in "${ORDER[@]}"; do
    for b in "${BROKERS[@]}"; do
      # Durability modes matter only for the durable cases.
      [[ $c != durable* && $b == petrel-periodic ]] && continue
      [[ $c != durable* && $b == petrel-fsync ]] && continue
      start_broker "$b"
      line=$(taskset -c "$TOOL_CPU" "$LOADGEN" --port "$PORT" --broker-pid "$pid" --label "$b" \
               ${ARGS[$c]} --client-prefix "lg$r" 2>"$OUT/work/$c.$b.$r.log" | tail -1) || true
      stop_broker
      echo "{\"case\":\"$c\",\"round\":$r,${line#\{}" >>"$RESULTS"
      printf '[round %d] %-22s %-16s %s\n' "$r" "$c" "$b" \
        "$(grep -o '"pub_rate":[0-9.]*\|"lat_p99_us":[0-9.]*\|"lost":[0-9]*\|"correct":[a-z]*' <<<"$line" | tr '\n' ' ')"
    done
  done
done

/usr/bin/python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cases = {}
for r in rows:
    cases.setdefault(r["case"], {}).setdefault(r.get("label", "?"), []).append(r)
print("\n| case | broker | msg/s (median [min..max]) | p99 µs | lost | redelivered | correct |")
print("|---|---|---|---|---|---|---|")
for c, by in cases.items():
    for b, rs in by.items():
        rate = [x.get("pub_rate", 0) for x in rs]
        p99 = statistics.median(x.get("lat_p99_us", 0) for x in rs)
        print(f"| {c} | {b} | {statistics.median(rate):,.0f} [{min(rate):,.0f}..{max(rate):,.0f}] | "
              f"{p99:,.0f} | {max(x.get('lost', 0) for x in rs)} | {max(x.get('redelivered', 0) for x in rs)} | "
              f"{all(x.get('correct') for x in rs)} |")
PY

#!/usr/bin/env bash
# Many publishers, one collector: P QoS 1 publishers with no pause to one
# subscriber on "bench/#" (and to a share group of two members), the broker
# on one core and the load tool on another. With HOG=1 a busy loop shares
# the broker's core, as on a host where the broker cannot keep up. One line
# per run: publish and delivery rates, what the tool counted as lost (not
# delivered before its drain ended: above the broker's queue limit, or
# still queued), latency, the broker's CPU per delivery and its RSS.
#
#   MQTTBENCH=/path/to/mqttbench [BROKER='bench/petrel.sh {port}'] [HOG=1] \
#     bench/fanin.sh [PUBLISHERS...]        (default: 300 1000)
#
# env: BROKER (a command with {port}; e.g. 'env FLASHMQ_BIN=... bench/flashmq.sh
#      {port}'), BROKER_CPUS (0), TOOL_CPU (1), DURATION (5 s), PORT (18961).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${MQTTBENCH:?set MQTTBENCH to the mqttbench binary}
broker=${BROKER:-"$here/petrel.sh {port}"}
port=${PORT:-18961}
pubs=("$@")
[[ ${#pubs[@]} -gt 0 ]] || pubs=(300 1000)
work=$(mktemp -d "${TMPDIR:-/tmp}/petrel-fanin.XXXXXX")
hog=
cleanup() {
  [[ -n "$hog" ]] && kill "$hog" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
if [[ "${HOG:-0}" == 1 ]]; then
  taskset -c "${BROKER_CPUS:-0}" sh -c 'while :; do :; done' &
  hog=$!
fi
run() {  # run LABEL MQTTBENCH-ARGS...
  local label=$1
  shift
  MQTTBENCH_WORKDIR="$work" taskset -c "${BROKER_CPUS:-0}" bash -c "exec ${broker//\{port\}/$port}" \
    >"$work/broker.log" 2>&1 &
  local wrapper=$!
  # bench/petrel.sh waits up to 70 s for a port another broker's closed
  # connections still hold (FlashMQ's, without SO_REUSEADDR).
  for _ in $(seq 900); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
  local pid
  pid=$(ss -ltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  if [[ -z "$pid" ]]; then
    printf '%-22s the broker did not start (%s)\n' "$label" "$(tail -1 "$work/broker.log")"
    kill "$wrapper" 2>/dev/null || true
    wait "$wrapper" 2>/dev/null || true
    return
  fi
  local line
  line=$(taskset -c "${TOOL_CPU:-1}" "$bench" throughput "$@" --qos 1 --payload 64 --duration "${DURATION:-5}" \
    --port "$port" --broker-pid "$pid" --quiet | grep '^{' || true)
  kill "$pid" 2>/dev/null || true
  wait "$wrapper" 2>/dev/null || true
  python3 - "$label" "$line" <<'PY'
import json, sys
label, line = sys.argv[1], sys.argv[2]
if not line:
    print("%-22s no result" % label)
    sys.exit(0)
r = json.loads(line)
print("%-22s publish %9.0f/s  delivered %9.0f/s  lost %8d  dups %d  ooo %d  p50 %7.1f ms  p99 %7.1f ms"
      "  broker %6.0f ns/delivery  RSS %6.1f MB"
      % (label, r["pub_rate"], r["deliver_rate"], r["lost"], r["dups"], r["ooo"], r["lat_p50_us"] / 1000,
         r["lat_p99_us"] / 1000, r["broker_ns_per_delivery"], r["broker_rss_kb_end"] / 1024))
PY
  sleep 1
}
for p in "${pubs[@]}"; do
  run "$p -> 1" --pubs "$p" --subs 1 --topic-mode wildcard
  run "$p -> share group of 2" --pubs "$p" --subs 2 --groups 1 --topic-mode shared --proto 5
done

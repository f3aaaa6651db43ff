#!/usr/bin/env bash
# Latency at the same load: mqttbench's `latency` scenario (publishers paced
# to a fixed total rate) against Petrel and, optionally, a second broker,
# alternating, at each rate in RATES. A saturated run's latency is queueing
# (about what the tool keeps outstanding divided by the rate, Little's law),
# so two brokers that reach different rates cannot be compared by it; paced
# at the same rate they can. One line per run: the rate reached, latency
# percentiles, how late the tool's own sends were (send lag), the CPU of
# the tool and of the broker, and whether every message arrived once, in
# order.
#
#   MQTTBENCH=/path/to/mqttbench [BROKER_B='env FLASHMQ_BIN=... bench/flashmq.sh {port}'] \
#     bench/paced.sh
#
# env: BROKER_A (default bench/petrel.sh {port}), LABEL_A (petrel), BROKER_B
#      (none), LABEL_B (B), RATES (total publishes per second; default
#      "50000 100000 200000"), ROUNDS (3), CASE (default "--pubs 10 --subs 10
#      --qos 1 --topic-mode wildcard --payload 64": 10 deliveries per
#      publish), DURATION (6 s), BROKER_CPU (0), TOOL_CPU (1), PORT (18965).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${MQTTBENCH:?set MQTTBENCH to the mqttbench binary}
broker_a=${BROKER_A:-"$here/petrel.sh {port}"}
label_a=${LABEL_A:-petrel}
broker_b=${BROKER_B:-}
label_b=${LABEL_B:-B}
rates=${RATES:-50000 100000 200000}
rounds=${ROUNDS:-3}
case_args=${CASE:---pubs 10 --subs 10 --qos 1 --topic-mode wildcard --payload 64}
port=${PORT:-18965}
work=$(mktemp -d "${TMPDIR:-/tmp}/petrel-paced.XXXXXX")
trap 'rm -rf "$work"' EXIT

run() {  # run LABEL BROKER-COMMAND RATE
  local label=$1 cmd=$2 rate=$3
  MQTTBENCH_WORKDIR="$work" taskset -c "${BROKER_CPU:-0}" bash -c "exec ${cmd//\{port\}/$port}" \
    >"$work/broker.log" 2>&1 &
  local wrapper=$!
  # bench/petrel.sh and bench/flashmq.sh wait for a port that closed
  # connections of the run before still hold.
  for _ in $(seq 900); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
  local pid
  pid=$(ss -ltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  if [[ -z "$pid" ]]; then
    printf '%-10s %7s the broker did not start (%s)\n' "$label" "$rate" "$(tail -1 "$work/broker.log")"
    kill "$wrapper" 2>/dev/null || true
    wait "$wrapper" 2>/dev/null || true
    return
  fi
  local line
  # shellcheck disable=SC2086
  line=$(taskset -c "${TOOL_CPU:-1}" "$bench" latency $case_args --rate "$rate" --duration "${DURATION:-6}" \
    --port "$port" --broker-pid "$pid" --quiet | grep '^{' || true)
  kill "$pid" 2>/dev/null || true
  wait "$wrapper" 2>/dev/null || true
  python3 - "$label" "$rate" "$line" <<'PY'
import json, sys
label, rate, line = sys.argv[1], sys.argv[2], sys.argv[3]
if not line:
    print("%-10s %7s no result" % (label, rate))
    sys.exit(0)
r = json.loads(line)
print("%-10s %7s/s  delivered %9.0f/s  p50 %6.0f us  p99 %6.0f us  p99.9 %6.0f us  max %6.0f us"
      "  send lag p99 %7.0f us  tool %3.0f %%  broker %3.0f %%  %s"
      % (label, rate, r["deliver_rate"], r["lat_p50_us"], r["lat_p99_us"], r["lat_p999_us"], r["lat_max_us"],
         r.get("send_lag_p99_us", 0), r["tool_cpu_pct"], r["broker_cpu_pct"],
         "correct" if r["correct"] else "NOT CORRECT (lost %d, dups %d, ooo %d)" % (r["lost"], r["dups"], r["ooo"])))
PY
  sleep 1
}

for ((round = 1; round <= rounds; round++)); do
  for rate in $rates; do
    run "$label_a" "$broker_a" "$rate"
    [[ -n "$broker_b" ]] && run "$label_b" "$broker_b" "$rate"
  done
done

#!/usr/bin/env bash
# Throughput with 1, 2, ... event loops (`workers:`), for the cases where
# more loops should help: QoS 1 10->10, fan-out 1->100, and QoS 0 1->1 as the
# case where they cannot. Prints, per case and loop count, deliveries per
# second, p99 latency, the CPU of each broker thread (main loop, petrel-io-N,
# the store's writer) and the load tool's own CPU: a run where the tool or
# the machine is the limit must not be read as the broker's.
#
#   MQTTBENCH=/path/to/mqttbench bench/workers.sh [LOOPS...]   (default: 1 2)
#
# The broker and the tool are not pinned: on a machine with few cores they
# share them, which understates what more loops give on a larger one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${MQTTBENCH:?set MQTTBENCH to the mqttbench binary}
if [ $# -gt 0 ]; then loops=("$@"); else loops=(1 2); fi
port=${PORT:-18941}
duration=${DURATION:-5}
cases=(
  "qos1-10to10|throughput --qos 1 --pubs 10 --subs 10"
  "fanout100-qos0|fanout --qos 0 --subs 100"
  "qos0-1to1|throughput --qos 0"
)
# shellcheck source=bench/thread_cpu.sh
. "$here/thread_cpu.sh"
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  for w in "${loops[@]}"; do
    PETREL_WORKERS=$w "$here/petrel.sh" "$port" >/dev/null 2>&1 &
    for _ in $(seq 100); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
    pid=$(ss -ltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    before=$(thread_ticks "$pid"); t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    json=$("$bench" $args --port "$port" --duration "$duration" --quiet | tail -1)
    t1=$(date +%s.%N); after=$(thread_ticks "$pid")
    threads=$(thread_cpu "$before" "$after" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    echo "$json" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read())
print('%-15s workers=%s deliveries/s=%9.0f p99=%6.0fus correct=%s tool=%.0f%% | %s' % ('$name', '$w', d['deliver_rate'], d['lat_p99_us'], d['correct'], d['tool_cpu_pct'], '$threads'))"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5
  done
done

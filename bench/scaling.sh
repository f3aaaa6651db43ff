#!/usr/bin/env bash
# Throughput with 1, 2, 4, ... event loops on a machine with many cores,
# Petrel or FlashMQ, with the load spread over several mqttbench processes
# (each is single-threaded: one would be the limit long before the broker).
#
#   MQTTBENCH=/path/to/mqttbench [BROKER=petrel|flashmq] [FLASHMQ_BIN=...] \
#     [TOOLS=8] [BROKER_CPUS=0-7] [TOOL_CPUS=8-15] [DURATION=5] \
#     bench/scaling.sh [LOOPS...]          (default: 1 2 4 7)
#
# Seven loops, not eight, on eight broker cores: Petrel's main loop, which
# routes, is a thread of its own beside the worker loops.
# Each case runs TOOLS copies of mqttbench at once, pinned to TOOL_CPUS,
# each on its own topics (`--topic-prefix s<k>`) and client ids; the broker
# is pinned to BROKER_CPUS whatever its number of loops, so that only the
# loops change between rows. A line per case and loop count: deliveries per
# second summed over the copies, the worst p99 among them, whether every
# copy saw every message once and in order, the CPU of each busy broker
# thread, and the copies' own CPU (summed: 100 % is one core). Cases:
#   qos1-10to10     each copy: 10 publishers -> 10 subscribers, QoS 1
#   fanout100-qos0  each copy: 1 publisher -> 100 subscribers, QoS 0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${MQTTBENCH:?set MQTTBENCH to the mqttbench binary}
broker=${BROKER:-petrel}
if [ $# -gt 0 ]; then loops=("$@"); else loops=(1 2 4 7); fi
tools=${TOOLS:-8}
broker_cpus=${BROKER_CPUS:-0-7}
tool_cpus=${TOOL_CPUS:-8-15}
duration=${DURATION:-5}
port=${PORT:-18951}
cases=(
  "qos1-10to10|throughput --qos 1 --pubs 10 --subs 10"
  "fanout100-qos0|fanout --qos 0 --subs 100"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=bench/thread_cpu.sh
. "$here/thread_cpu.sh"
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  for w in "${loops[@]}"; do
    case "$broker" in
      petrel) PETREL_WORKERS=$w MQTTBENCH_WORKDIR=$work taskset -c "$broker_cpus" "$here/petrel.sh" "$port" >"$work/broker.log" 2>&1 & ;;
      flashmq) FLASHMQ_THREADS=$w MQTTBENCH_WORKDIR=$work taskset -c "$broker_cpus" "$here/flashmq.sh" "$port" >"$work/broker.log" 2>&1 & ;;
      *) echo "BROKER must be petrel or flashmq" >&2; exit 1 ;;
    esac
    pid=$!  # the start scripts exec the broker: this is its pid
    for _ in $(seq 100); do listening && break; sleep 0.1; done
    listening || { echo "$broker did not start:" >&2; cat "$work/broker.log" >&2; exit 1; }
    before=$(thread_ticks "$pid"); t0=$(date +%s.%N)
    tpids=()
    for k in $(seq "$tools"); do
      # shellcheck disable=SC2086
      taskset -c "$tool_cpus" "$bench" $args --topic-prefix "s$k" --port "$port" --duration "$duration" --quiet \
        >"$work/tool.$k.json" 2>"$work/tool.$k.err" &
      tpids+=($!)
    done
    for p in "${tpids[@]}"; do wait "$p" || true; done
    t1=$(date +%s.%N); after=$(thread_ticks "$pid")
    threads=$(thread_cpu "$before" "$after" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    python3 - "$work" "$tools" "$name" "$broker" "$w" "$threads" <<'PY'
import json, sys
work, tools, name, broker, w, threads = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
rate = p99 = cpu = 0.0
correct = True
for k in range(1, tools + 1):
    try:
        d = json.loads(open(f"{work}/tool.{k}.json").read().strip().splitlines()[-1])
    except Exception:
        print(f"{name:15s} {broker} loops={w}: copy {k} gave no result:", open(f"{work}/tool.{k}.err").read()[-300:])
        correct = False
        continue
    rate += d["deliver_rate"]
    p99 = max(p99, d["lat_p99_us"])
    cpu += d["tool_cpu_pct"]
    correct = correct and bool(d["correct"])
print(f"{name:15s} {broker:7s} loops={w:2s} deliveries/s={rate:10.0f} worst-p99={p99:7.0f}us correct={correct} tools={cpu:.0f}% | {threads}", flush=True)
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5
  done
done

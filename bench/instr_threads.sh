#!/usr/bin/env bash
# User-space instructions per delivery on each of the broker's threads
# (valgrind --tool=callgrind --separate-threads=yes): what the worker loops
# take off the main loop at `workers: N`. The broker runs the scenario
# twice, with N1 and N2 messages per publisher; per thread,
# (Ir(N2) - Ir(N1)) / (deliveries(N2) - deliveries(N1)) cancels start-up
# and shutdown. Under valgrind the threads run one at a time, so the loops'
# batches are larger than in a live run: read the main loop's figure.
# Thread 01 is the main loop; the others are numbered as they started (the
# store's writer, the worker loops, libuv's thread pool).
#
#   MQTTBENCH=/path/to/mqttbench bench/instr_threads.sh [WORKERS]   (default 2)
#
# env: SCENARIO (default "throughput --pubs 10 --subs 10 --qos 1 --payload 64";
#      "durable --qos 1 --payload 64 --subs 1" counts a message published,
#      stored and drained, and thread 02 is then the store's writer),
#      N1, N2 (5000, 15000), PORT (18851), PETREL_MAX_INFLIGHT, PETREL_BIN
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${MQTTBENCH:?set MQTTBENCH to the mqttbench binary}
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
workers=${1:-2}
scenario=${SCENARIO:-throughput --pubs 10 --subs 10 --qos 1 --payload 64}
n1=${N1:-5000}
n2=${N2:-15000}
port=${PORT:-18851}
out=$(mktemp -d "${TMPDIR:-/tmp}/petrel-instr.XXXXXX")
trap 'rm -rf "$out"' EXIT
declare -A delivered
for n in "$n1" "$n2"; do
  MQTTBENCH_WORKDIR="$out/work" PETREL_WORKERS=$workers \
    MQTTBENCH_WRAP="valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$out/cg.$n" \
    "$here/petrel.sh" "$port" >"$out/broker.$n.log" 2>&1 &
  broker=$!
  for _ in $(seq 300); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.2; done
  # shellcheck disable=SC2086
  line=$("$bench" $scenario --count "$n" --port "$port" --max-time 300 --drain 30 --quiet | grep '^{')
  [[ "$line" == *'"correct":true'* ]] || { echo "run with $n messages was not correct: $line" >&2; exit 1; }
  # The durable scenario reports its messages as "unique" (each drained once).
  delivered[$n]=$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(r.get("delivered", r.get("unique")))' "$line")
  # callgrind writes its files when the broker exits; petrel.sh execs it.
  kill -INT "$broker"
  wait "$broker" || true
done
d=$(( ${delivered[$n2]} - ${delivered[$n1]} ))
echo "workers=$workers deliveries: ${delivered[$n1]} / ${delivered[$n2]}"
for f in "$out"/cg."$n2"-*; do
  t=${f##*-}
  a=$(awk '/^totals:/ { print $2; exit }' "$f")
  b=$(awk '/^totals:/ { print $2; exit }' "$out/cg.$n1-$t")
  what="thread $t"
  [ "$t" = 01 ] && what="thread 01 (the main loop)"
  echo "$what: $(( (a - b) / d )) instructions per delivery"
done

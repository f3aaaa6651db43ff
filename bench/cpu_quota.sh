#!/usr/bin/env bash
# The broker in a cgroup with a CPU quota, as in a container given fewer
# CPUs than its host has (docker --cpus, a Kubernetes CPU limit, systemd's
# CPUQuota=), with `workers:` set to each of LOOPS in turn (default: 16 and
# auto: one loop per CPU of a 16-core host, and what auto picks under the
# quota). The tool runs outside the cgroup. Prints, per round, loop setting
# and case: deliveries per second, p99 and p99.9 latency, and how often the
# kernel stopped the broker for the rest of a period (nr_throttled and
# throttled time from the cgroup's cpu.stat).
#
#   MQTTBENCH=/path/to/mqttbench bench/cpu_quota.sh [LOOPS...]
#
# env: QUOTA (CPUs, default 1), ROUNDS (3), DURATION (5 s), PORT (19301),
#      PETREL_BIN. Needs root and a cgroup hierarchy with the cpu
#      controller that may be written (v1 or v2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${MQTTBENCH:?set MQTTBENCH to the mqttbench binary}
if [ $# -gt 0 ]; then loops=("$@"); else loops=(16 auto); fi
quota=${QUOTA:-1}
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
port=${PORT:-19301}
period=100000
quota_us=$(python3 -c 'import sys; print(int(float(sys.argv[1]) * int(sys.argv[2])))' "$quota" "$period")

# The hierarchy with the cpu controller: v1's where there is one (as the
# kernel does), else v2's.
v1=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break; if ($(i + 1) == "cgroup" && ("," $(i + 3) ",") ~ /,cpu,/) { print $5; exit } }' /proc/self/mountinfo)
v2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break; if ($(i + 1) == "cgroup2") { print $5; exit } }' /proc/self/mountinfo)
if [ -n "$v1" ]; then
  cg="$v1/petrel-quota-bench-$$"
  mkdir "$cg"
  echo "$period" >"$cg/cpu.cfs_period_us"
  echo "$quota_us" >"$cg/cpu.cfs_quota_us"
elif [ -n "$v2" ]; then
  echo +cpu >"$v2/cgroup.subtree_control"
  cg="$v2/petrel-quota-bench-$$"
  mkdir "$cg"
  echo "$quota_us $period" >"$cg/cpu.max"
else
  echo "no cgroup hierarchy with the cpu controller is mounted" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/petrel-quota.XXXXXX")
cleanup() {
  pkill -INT -f "petrel-$port.yaml" 2>/dev/null || true
  sleep 0.5
  rmdir "$cg" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
stat_field() { awk -v k="$1" '$1 == k { print $2 }' "$cg/cpu.stat"; }
# v1 counts throttled time in ns (throttled_time), v2 in µs (throttled_usec).
throttled_ms() {
  local ns us
  ns=$(stat_field throttled_time)
  if [ -n "$ns" ]; then echo $((ns / 1000000)); else us=$(stat_field throttled_usec); echo $((us / 1000)); fi
}
cases=(
  "qos1-10to10|throughput --qos 1 --pubs 10 --subs 10 --payload 64"
  "fanout100-qos0|fanout --qos 0 --subs 100 --payload 64"
)
echo "quota: $quota CPUs ($cg), the tool outside it"
for round in $(seq "$rounds"); do
  for w in "${loops[@]}"; do
    for c in "${cases[@]}"; do
      name=${c%%|*}; args=${c#*|}
      MQTTBENCH_WORKDIR=$work PETREL_WORKERS=$w \
        sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$here/petrel.sh" "$port" >"$work/broker.log" 2>&1 &
      for _ in $(seq 100); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
      n0=$(stat_field nr_throttled); t0=$(throttled_ms)
      # shellcheck disable=SC2086
      line=$("$bench" $args --duration "$duration" --warmup 1 --port "$port" --quiet | grep '^{')
      n1=$(stat_field nr_throttled); t1=$(throttled_ms)
      pkill -INT -f "petrel-$port.yaml" || true
      wait || true
      echo "round $round, workers: $w, $name: $(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print("%.0f deliveries/s, p99 %.0f us, p99.9 %.0f us, correct %s" % (r["deliver_rate"], r["lat_p99_us"], r["lat_p999_us"], r["correct"]))' "$line"), throttled in $((n1 - n0)) periods, $((t1 - t0)) ms"
    done
  done
done

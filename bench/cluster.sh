#!/usr/bin/env bash
# Messages crossing between the nodes of a cluster, against one node alone.
# Starts a nats-server and two Petrel nodes (`cluster:`, one event loop
# each, persistence as bench/petrel.sh has it), then runs the load
# generator per case three ways:
#   alone    a node without a cluster section: publishers and subscribers on it
#   local    publishers and subscribers on node A, which is in a cluster
#            (what being in a cluster costs a node's own traffic)
#   across   publishers on node A, subscribers on node B: every message
#            crosses through NATS
# and prints deliveries per second, p99 latency, loss/duplicates, and the
# CPU of each process (node A, node B, nats-server, the tool).
#
#   bench/cluster.sh          (after building: build/petrel, build/bench/petrel_loadgen)
#
# With JETSTREAM=1 nats-server runs with JetStream (file storage), and QoS
# 1 and 2 messages cross through the cluster's stream: the publisher's
# PUBACK waits until the other node's copy is stored (README, "Cluster").
# Without it they cross the core way, at most once. With it a share
# group's messages (the "shared" case: ten members of one group) go
# through the groups' stream even when publishers and members are on one
# node ("local"), since members may be on any node.
#
# Needs nats-server (Debian package). Every process shares the machine's
# cores: on a small machine the figures say more about the machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${PETREL_BIN:-$here/../build/petrel}
loadgen=${LOADGEN:-$here/../build/bench/petrel_loadgen}
duration=${DURATION:-5}
work=$(mktemp -d)
nats_port=${NATS_PORT:-14322}
port_a=${PORT_A:-18951}
port_b=${PORT_B:-18952}
port_alone=${PORT_ALONE:-18953}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cases=(
  "qos1-10to10|--qos 1 --pubs 10 --subs 10"
  "qos0-10to10|--qos 0 --pubs 10 --subs 10"
  "fanout100-qos0|--qos 0 --pubs 1 --subs 100 --sub-filter all"
  "shared-qos1-10to10|--qos 1 --pubs 10 --subs 10 --shared 1"
)

node() {  # name port [cluster]
  local cfg="$work/$1.yaml"
  cat >"$cfg" <<YAML
log_level: warning
workers: 1
listeners: [{address: 127.0.0.1, port: $2}]
limits: {max_inflight: 100, max_queued_messages: 1000000}
persistence: {enabled: true, dir: $work/$1-data, sync: ${PETREL_SYNC:-fsync}}
YAML
  if [ "${3:-}" = cluster ]; then
    echo "cluster: {servers: [nats://127.0.0.1:$nats_port], node: $1}" >>"$cfg"
  fi
  "$bin" --config "$cfg" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do ss -ltn "sport = :$2" | grep -q LISTEN && return; sleep 0.1; done
  echo "node $1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}

js=()
if [ "${JETSTREAM:-0}" = 1 ]; then js=(--jetstream --store_dir "$work/nats-js"); fi
nats-server -a 127.0.0.1 -p "$nats_port" "${js[@]}" >"$work/nats.log" 2>&1 &
nats_pid=$!; pids+=($nats_pid)
for _ in $(seq 100); do ss -ltn "sport = :$nats_port" | grep -q LISTEN && break; sleep 0.1; done
node a "$port_a" cluster; pid_a=${pids[-1]}
node b "$port_b" cluster; pid_b=${pids[-1]}
node alone "$port_alone"; pid_alone=${pids[-1]}

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  for how in alone local across; do
    case $how in
      alone) port=$port_alone; sub=$port_alone; watch=($pid_alone) ;;
      local) port=$port_a; sub=$port_a; watch=($pid_a $pid_b $nats_pid) ;;
      across) port=$port_a; sub=$port_b; watch=($pid_a $pid_b $nats_pid) ;;
    esac
    before=(); for p in "${watch[@]}"; do before+=("$(ticks "$p")"); done
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    json=$("$loadgen" $args --port "$port" --sub-port "$sub" --settle 1 --duration "$duration" \
      --client-prefix "$how${name:0:8}" --topic-prefix "bench/$how/$name" | tail -1)
    t1=$(date +%s.%N)
    cpu=""; i=0
    for p in "${watch[@]}"; do
      cpu+="$(awk -v a="${before[$i]}" -v b="$(ticks "$p")" -v s="$(awk -v x="$t0" -v y="$t1" 'BEGIN { print y - x }')" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f%%", (b - a) / hz / s * 100 }') "
      i=$((i + 1))
    done
    echo "$json" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read())
print('%-15s %-6s deliveries/s=%9.0f p99=%7.0fus lost=%d dups=%d tool=%.0f%% | cpu (%s): %s' % (
    '$name', '$how', d['deliver_rate'], d['lat_p99_us'], d['lost'], d['dups'], d.get('tool_cpu_pct', -1),
    'alone' if '$how' == 'alone' else 'A B nats', '$cpu'))"
  done
done

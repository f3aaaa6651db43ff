#!/usr/bin/env bash
# Starts Petrel in the foreground for mqttbench's compare.sh (the broker
# command: 'bench/petrel.sh {port}'). Persistence is on, as in the shipped
# config.yaml, with its store in the run's scratch directory; PETREL_SYNC
# picks fsync (default) or periodic. Honours MQTTBENCH_WRAP (valgrind,
# perf or strace prefix) and MQTTBENCH_WORKDIR; PETREL_MAX_INFLIGHT sets the
# in-flight window (default 100, as mosquitto is run; FlashMQ is run with
# 65,535); PETREL_WORKERS the event loops (default 1, to compare one core).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:-${PORT:-18831}}
bin=${PETREL_BIN:-$here/../build/petrel}
work=${MQTTBENCH_WORKDIR:-$(mktemp -d)}
mkdir -p "$work"
data="$work/petrel-data-$port"
rm -rf "$data"
cfg="$work/petrel-$port.yaml"
cat >"$cfg" <<YAML
log_level: warning
workers: ${PETREL_WORKERS:-1}
listeners:
  - address: 127.0.0.1
    port: $port
limits:
  max_inflight: ${PETREL_MAX_INFLIGHT:-100}
  max_queued_messages: ${PETREL_MAX_QUEUED:-1000000}
  max_keepalive: 300
persistence:
  enabled: ${PETREL_PERSIST:-true}
  dir: $data
  sync: ${PETREL_SYNC:-fsync}
YAML
ulimit -n 65536 2>/dev/null || true
# A broker run just before on this port may have left connections in
# TIME_WAIT made without SO_REUSEADDR (FlashMQ's): the port cannot be bound
# until they expire (up to 60 s). Wait for that rather than fail.
for _ in $(seq 700); do
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null && break
  sleep 0.1
done
# shellcheck disable=SC2086
exec ${MQTTBENCH_WRAP:-} "$bin" --config "$cfg"

#!/usr/bin/env bash
# Starts Petrel in the foreground for mqttbench's compare.sh (the broker
# command: 'bench/petrel.sh {port}'). Persistence is on, as in the shipped
# config.yaml, with its store in the run's scratch directory; PETREL_SYNC
# picks fsync (default) or periodic. Honours MQTTBENCH_WRAP (valgrind,
# perf or strace prefix) and MQTTBENCH_WORKDIR.
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
listeners:
  - address: 127.0.0.1
    port: $port
limits:
  max_inflight: 100
  max_queued_messages: ${PETREL_MAX_QUEUED:-1000000}
  max_keepalive: 300
persistence:
  enabled: ${PETREL_PERSIST:-true}
  dir: $data
  sync: ${PETREL_SYNC:-fsync}
YAML
ulimit -n 65536 2>/dev/null || true
# shellcheck disable=SC2086
exec ${MQTTBENCH_WRAP:-} "$bin" --config "$cfg"

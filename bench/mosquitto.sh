#!/usr/bin/env bash
# Starts mosquitto in the foreground for comparison runs (the broker command
# 'bench/mosquitto.sh {port}'), configured like bench/petrel.sh: in-flight
# window 100, queues of up to 1,000,000 messages, persistence on (mosquitto
# keeps queued messages in RAM and writes a snapshot file on exit).
set -euo pipefail
port=${1:-${PORT:-18831}}
work=${MQTTBENCH_WORKDIR:-$(mktemp -d)}
dir="$work/mosquitto-$port"
rm -rf "$dir"
mkdir -p "$dir"
cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
max_keepalive 300
max_connections -1
set_tcp_nodelay true
sys_interval 0
persistence true
persistence_location $dir/
autosave_interval 1800
log_dest stderr
log_type error
user root
CONF
ulimit -n 65536 2>/dev/null || true
# shellcheck disable=SC2086
exec ${MQTTBENCH_WRAP:-} /usr/sbin/mosquitto -c "$dir/mosquitto.conf"

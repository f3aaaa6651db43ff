#!/usr/bin/env bash
# Starts FlashMQ in the foreground for comparison runs (the broker command
# 'bench/flashmq.sh {port}'), configured as the per-core comparison asks:
# one thread, anonymous clients, in-flight and queue limits far above what
# the runs need, TCP_NODELAY, and a storage directory (sessions and queued
# messages are saved there at shutdown). FLASHMQ_BIN names the binary
# (FlashMQ is not in Debian: build it from its public repository, tag
# v1.26.2, CMake Release). Honours MQTTBENCH_WRAP and MQTTBENCH_WORKDIR.
set -euo pipefail
port=${1:-${PORT:-18831}}
bin=${FLASHMQ_BIN:?set FLASHMQ_BIN to the flashmq binary}
work=${MQTTBENCH_WORKDIR:-$(mktemp -d)}
dir="$work/flashmq-$port"
rm -rf "$dir"
mkdir -p "$dir/storage"
cat >"$dir/flashmq.conf" <<CONF
thread_count ${FLASHMQ_THREADS:-1}
allow_anonymous true
max_qos_msg_pending_per_client 65535
max_qos_bytes_pending_per_client 1000000000
storage_dir $dir/storage
log_file $dir/flashmq.log
listen {
  protocol mqtt
  inet_protocol ip4
  inet4_bind_address 127.0.0.1
  port $port
  tcp_nodelay true
}
CONF
ulimit -n 65536 2>/dev/null || true
# shellcheck disable=SC2086
exec ${MQTTBENCH_WRAP:-} "$bin" --config-file "$dir/flashmq.conf"

#!/bin/sh
# Makes docs/status-page.png: starts Petrel with the HTTP endpoint, runs
# publishers, subscribers and share groups against it for a while (the page
# shows the last two minutes), then takes a screenshot of the status page
# with headless Chromium.
#
#   docs/status-page.sh [PETREL_BINARY] [SECONDS_OF_TRAFFIC]
#
# Needs: chromium, mosquitto-clients.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
petrel=${1:-$here/../build/petrel}
seconds=${2:-90}
work=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mqtt_port=18831
http_port=18080
cat > "$work/petrel.yaml" <<CONF
log_level: warning
listeners:
  - {address: 127.0.0.1, port: $mqtt_port}
persistence: {enabled: true, dir: $work/data, sync: periodic}
mqtt: {sys_interval: 5}
http: {enabled: true, address: 127.0.0.1, port: $http_port}
CONF
"$petrel" --config "$work/petrel.yaml" & pids="$pids $!"
sleep 1

sub() { mosquitto_sub -p $mqtt_port "$@" > /dev/null 2>&1 & pids="$pids $!"; }
pub() {  # topic, delay between messages (s), qos
  mosquitto_pub -p $mqtt_port -t "$1" -m '{"v": 21.5, "unit": "C"}' -q "$3" \
    --repeat 100000000 --repeat-delay "$2" > /dev/null 2>&1 & pids="$pids $!"
}

# Subscribers: a dashboard on everything, two share groups with members
# online, one whose only member went away (its queue grows).
sub -t 'plant/#' -q 1
sub -t 'orders/#' -q 1
for i in 1 2 3; do sub -V 5 -i "worker-$i" -t '$share/workers/jobs/#' -q 1; done
sub -V 5 -i "audit-1" -t '$share/audit/plant/+/alarm' -q 1
mosquitto_sub -p $mqtt_port -V 5 -c -x 3600 -i billing-1 -t '$share/billing/orders/#' -q 1 -E
for i in 1 2 3 4 5 6 7 8; do mosquitto_sub -p $mqtt_port -V 5 -i "idle-$i" -c -x 3600 -t "devices/$i/cmd" -q 1 -E; done

# Publishers at different rates.
pub plant/line1/temperature 0.002 0
pub plant/line2/temperature 0.004 0
pub plant/line1/pressure 0.01 1
pub plant/line3/alarm 0.2 1
pub jobs/render 0.02 1
pub jobs/transcode 0.05 1
pub orders/eu 0.03 1
pub orders/us 0.06 1

# Bursts every 15 s, so the chart has some shape.
(
  while true; do
    sleep 15
    mosquitto_pub -p $mqtt_port -t plant/line4/vibration -m burst -q 0 --repeat 20000 > /dev/null 2>&1
  done
) & pids="$pids $!"

sleep "$seconds"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,1000 \
  --virtual-time-budget=3000 --screenshot="$here/status-page.png" "http://127.0.0.1:$http_port/" 2>/dev/null
echo "wrote $here/status-page.png"

#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs diagd's main job on an embedded default, with
# nothing supplied by the user: a generated video of a simulated line (some frames scratched) judged by a
# detector trained from random weights at first start (a segmentation + decision network, about a minute),
# verdicts published to a local mosquitto.
#   DIAGD_DEMO_SECONDS=N  stop after N seconds (default: run until Ctrl-C)
#   DIAGD_DEMO_PORT=P     broker port (default 1883 if free, else a free one)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
demo=${DIAGD_DEMO_DIR:-$PWD/out/demo}
mkdir -p "$demo"

port=${DIAGD_DEMO_PORT:-}
if [ -z "$port" ]; then
  if mosquitto_sub -p 1883 -t '$SYS/broker/version' -C 1 -W 1 >/dev/null 2>&1; then
    port=1883; echo "[demo] using the broker already running on port 1883"
  else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18830)
  fi
fi
if ! mosquitto_sub -p "$port" -t '$SYS/broker/version' -C 1 -W 1 >/dev/null 2>&1; then
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 100000\n' \
    "$port" "$demo" >"$demo/mosquitto.conf"
  mosquitto -c "$demo/mosquitto.conf" >"$demo/mosquitto.log" 2>&1 &
  broker=$!
  trap 'kill $broker 2>/dev/null || true' EXIT
  sleep 0.5
  echo "[demo] started mosquitto on 127.0.0.1:$port (log: $demo/mosquitto.log)"
fi

cat <<MSG
[demo] diagd judges a simulated line at 5 frames/s (every 4th frame is scratched) with a segmentation +
       decision detector that it trains from random weights on labelled frames at first start (about a
       minute). Watch the verdicts, with where each scratch is, in another terminal:
         mosquitto_sub -p $port -v -t 'diagd/#'
       Health and metrics: curl -s localhost:9410/readyz; curl -s localhost:9410/metrics | grep ^diagd_
       Stop with Ctrl-C.
MSG
export DIAGD_DEMO=true DIAGD_STATION=${DIAGD_STATION:-demo} DIAGD_DATA_DIR="$demo/data" \
  DIAGD_MQTT_BROKER="tcp://127.0.0.1:$port" DIAGD_LOG_FORMAT=${DIAGD_LOG_FORMAT:-text}
if [ -n "${DIAGD_DEMO_SECONDS:-}" ]; then
  timeout -s INT "$DIAGD_DEMO_SECONDS" bin/diagd run || [ $? -eq 124 ]
else
  bin/diagd run
fi

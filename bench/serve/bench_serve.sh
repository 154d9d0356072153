#!/usr/bin/env bash
# The fm serve load test: one run served on loopback with batching on
# (--max-batch 8) and off (--max-batch 1), the same bench_serve load against
# each; prints one JSON line per setting.
#   bench/serve/bench_serve.sh FM_BINARY BENCH_SERVE_BINARY RUN_DIR [CLIENTS] [REQUESTS] [MAX_TOKENS]
set -euo pipefail
fm=$1 bench=$2 run=$3 clients=${4:-8} requests=${5:-64} max_tokens=${6:-32}
log=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for batch in 8 1; do
  "$fm" serve --run "$run" --port 0 --max-batch "$batch" --queue "$requests" --timeout-s 120 2> "$log" &
  pid=$!
  port=
  for _ in $(seq 600); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*/' "$log" | cut -d: -f3 | tr -d /) || true
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { cat "$log" >&2; echo "bench_serve.sh: fm serve did not start" >&2; exit 1; }
  echo "{\"max_batch\":$batch,\"result\":$("$bench" --port "$port" --clients "$clients" --requests "$requests" \
    --max-tokens "$max_tokens" --time-limit-s 300)}"
  kill "$pid" && wait "$pid" || true
done

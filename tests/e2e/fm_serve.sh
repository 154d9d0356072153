#!/usr/bin/env bash
# End-to-end test of fm serve: a tiny GPT on the fortunes corpus served over
# HTTP on loopback (tests/e2e/serve_client.py holds the requests and what
# they must answer): health, completions equal to `fm generate text`,
# streaming, stop strings, concurrent requests batched yet each equal to its
# answer alone, bad requests (400/404/405 with JSON errors), the body limit,
# a full queue and timeouts (413/503/504); the page at / in headless Chromium
# (skipped where it is missing); a tiny text-to-image run's PNG, equal to
# `fm generate image` (media builds); and a clean stop on SIGTERM.
#   usage: fm_serve.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"
client=$root/tests/e2e/serve_client.py

servers=()
trap 'for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
# serve LOG ARGS...: starts fm serve on a free port; sets $port and $pid.
serve() {
  local log=$1; shift
  "$fm" serve --port 0 --threads 1 "$@" 2> "$log" &
  pid=$! && servers+=("$pid")
  for _ in $(seq 200); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*/' "$log" | cut -d: -f3 | tr -d /) || true
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "fm serve $* did not start"; }
    sleep 0.05
  done
  fail "fm serve $* printed no address"
}

FM=$fm "$root/tools/prepare-fortunes" data/fortunes > /dev/null
"$fm" train "$root/experiments/gpt_char_tiny.ini" --train.max_steps=60 --train.eval_every=0 --train.save_every=60 \
  --train.log_every=60 --run.dir=runs/tiny > train.log

# 1. The API on an lm run: what fm generate text gives is what the server gives.
"$fm" generate text --run runs/tiny --prompt "The " --max-new-tokens 40 --temperature 0.8 --top-k 20 --top-p 0.95 \
  --seed 7 > expected.txt
serve text.log --run runs/tiny --max-batch 8 --queue 16 --timeout-s 30
python3 "$client" text "$port" expected.txt

# 2. The page, in a headless browser: it runs a completion on load. Not a
#    streamed one: --virtual-time-budget waits for pending requests, not for
#    the rest of a response body, so the DOM would be dumped mid-stream.
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -n "$browser" ]; then
  timeout 60 "$browser" --headless --no-sandbox --disable-gpu --virtual-time-budget=20000 --dump-dom \
    "http://127.0.0.1:$port/?prompt=The%20&max_tokens=30&temperature=0.8&seed=7&stream=0&autorun=1" > page.html 2> browser.log ||
    { tail -5 browser.log >&2; fail "$browser could not load the page"; }
  python3 "$client" page "$port" page.html
else
  echo "page: skipped (no chromium)"
fi

# 3. A stop on SIGTERM: the server ends cleanly.
kill -TERM "$pid" && wait "$pid" || fail "fm serve did not exit cleanly on SIGTERM"
grep -q "fm serve: stopped" text.log || fail "fm serve did not report its stop"

# 4. The limits: body size, a full queue, timeouts.
serve limits.log --run runs/tiny --max-batch 1 --queue 1 --timeout-s 2 --max-body-bytes 4096
python3 "$client" limits "$port"
busy_port=$port

# 5. Images from a tiny text-to-image run (media builds).
if "$fm" prepare shapes --size 32 --split train --n 64 --seed 0 --out shapes > /dev/null 2>&1; then
  sed -E 's/.*"caption":"([^"]*)".*/\1/' shapes/captions.jsonl > captions.txt
  "$fm" tokenizer train --vocab-size 300 --out shapes.tok captions.txt > /dev/null
  "$fm" train "$root/experiments/t2i_shapes.ini" --model.width=32 --model.layers=1 --model.heads=2 \
    --model.text_width=32 --model.text_layers=1 --data.tokenizer=shapes.tok --data.train=shapes --data.val=shapes \
    --train.batch_size=8 --train.warmup_steps=1 --train.max_steps=2 --train.eval_every=0 --train.save_every=2 \
    --train.eval_samples=8 --eval.images=8 --diffusion.steps=4 --runtime.threads=1 --run.dir=runs/t2i > t2i.log
  serve image.log --run runs/t2i
  python3 "$client" image "$port" served.png
  "$fm" generate image --run runs/t2i --prompt "a red circle" --steps 3 --seed 2 --out expected.png > /dev/null 2>&1
  cmp -s served.png expected.png || fail "the served PNG differs from fm generate image's"
  echo "image: the served PNG equals fm generate image's"
else
  echo "image: skipped (no media support)"
fi

# 6. Runs it cannot serve, bad options and a port in use: one clear line.
expect_error "--run DIR is required" "$fm" serve
expect_error "is not a run directory" "$fm" serve --run data/fortunes
mkdir -p runs/untrained && cp runs/tiny/config.ini runs/untrained/
expect_error "has no valid checkpoint" "$fm" serve --run runs/untrained
expect_error "--max-batch must be at least 1" "$fm" serve --run runs/tiny --max-batch 0
expect_error "cannot listen on 127.0.0.1:$busy_port" "$fm" serve --run runs/tiny --port "$busy_port"
echo "fm serve: all checks passed"

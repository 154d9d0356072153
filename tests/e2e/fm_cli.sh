#!/usr/bin/env bash
# End-to-end test of the fm command on the fortunes corpus:
#   tokenizer + shards, a tiny recipe reaching its validation loss, resume
#   equality (2N straight == N, stop, resume N; and after SIGKILL), sampling,
#   TensorBoard readability, and bad inputs that must fail cleanly.
#   usage: fm_cli.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_error() {  # expect_error "text in the message" cmd...
  local want=$1; shift
  if "$@" >out.txt 2>err.txt; then fail "expected failure: $*"; fi
  grep -qF -- "$want" err.txt || { cat err.txt >&2; fail "message lacks '$want': $*"; }
}
losses() { grep -o '"train_loss":[^,}]*' "$1/metrics.jsonl"; }

FM=$fm "$root/tools/prepare-fortunes" data/fortunes >/dev/null
recipe=$root/experiments/gpt_char_tiny.ini

# 1. The tiny recipe reaches its stated validation loss.
"$fm" train "$recipe" --run.dir=runs/tiny > train.log
val=$(grep -o '"val_loss":[0-9.]*' runs/tiny/metrics.jsonl | tail -1 | cut -d: -f2)
awk -v v="$val" 'BEGIN { exit !(v < 2.1) }' || fail "val loss $val not below 2.1"
echo "tiny recipe: val loss $val"
"$fm" eval runs/tiny | grep -qF '"target":"val_loss < 2.1","target_met":true' || fail "fm eval does not report the recipe's target as met"
[ -f runs/tiny/config.ini ] && [ -d runs/tiny/checkpoints/step_800 ] && ls runs/tiny/events.out.tfevents.* >/dev/null

# 2. Resume: 2N steps straight equal N steps, a stop, and N more.
short=(--train.max_steps=40 --train.warmup_steps=5 --train.eval_every=0 --train.save_every=20 --train.log_every=10 --model.dropout=0.1)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=20 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
# ... and after a SIGKILL mid-run (checkpoints every 5 steps).
"$fm" train "$recipe" "${short[@]}" --train.save_every=5 --run.dir=runs/killed > /dev/null &
pid=$!
until [ -d runs/killed/checkpoints/step_10 ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
kill -KILL "$pid" 2>/dev/null || true
rc=0 && wait "$pid" 2>/dev/null || rc=$?
# Killed mid-run, not finished before the kill: SIGKILL's status, and its newest checkpoint short of step 40.
[ "$rc" = 137 ] || fail "the run to kill exited with $rc before it was killed"
newest=$(ls runs/killed/checkpoints | sed -n 's/^step_//p' | sort -n | tail -1)
[ -n "$newest" ] && [ "$newest" -ge 10 ] && [ "$newest" -lt 40 ] || fail "the killed run's newest checkpoint is step_$newest"
"$fm" train "$recipe" "${short[@]}" --train.save_every=5 --run.dir=runs/killed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/killed) || fail "losses after kill + resume differ"
echo "resume: identical losses"

# 3. Sampling is reproducible from its seed; bad prompts are refused.
a=$("$fm" generate text --run runs/tiny --prompt "The " --max-new-tokens 40 --seed 7)
b=$("$fm" generate text --run runs/tiny --prompt "The " --max-new-tokens 40 --seed 7)
[ "$a" = "$b" ] && [ ${#a} -gt 10 ] || fail "generate is not reproducible or empty"
expect_error "--prompt is not valid UTF-8" "$fm" generate text --run runs/tiny --prompt $'\xff\xfe'

# 4. TensorBoard reads the event files (where it is installed).
if python3 -c "import tensorboard" 2>/dev/null; then
  python3 "$root/tests/fixtures/read_tb_events.py" runs/tiny > tb.json
  grep -q '"train_loss"' tb.json && grep -q '"val_loss"' tb.json || fail "TensorBoard does not see the scalars"
  echo "tensorboard: scalars readable"
fi

# 5. Bad inputs fail with one clear line and lose nothing.
printf '[model]\nn_layers = 2\n' > typo.ini
expect_error "unknown key 'model.n_layers' (did you mean 'model.n_layer'?)" "$fm" train typo.ini
expect_error "key 'train.lr': 'fast' is not a finite number" "$fm" train "$recipe" --train.lr=fast
before=$(cd runs/tiny && find . -type f | sort | xargs sha256sum)
expect_error "already holds a run" "$fm" train "$recipe" --run.dir=runs/tiny
expect_error "was made for model.d_model = 96" "$fm" train "$recipe" --run.dir=runs/tiny --resume --model.d_model=64
after=$(cd runs/tiny && find . -type f | sort | xargs sha256sum)
[ "$before" = "$after" ] || fail "a refused command changed the run directory"
head -c 4096 /dev/zero | tr '\0' x > data/fortunes/bad_train_000.bin
expect_error "bad magic" "$fm" train "$recipe" --data.train=data/fortunes/bad_train_000.bin --run.dir=runs/bad
head -c 2000 data/fortunes/bytes_val_000.bin > data/fortunes/cut_val_000.bin
expect_error "cut_val_000.bin" "$fm" train "$recipe" --data.val=data/fortunes/cut_val_000.bin --run.dir=runs/cut
echo "1 passed, 0 failed"

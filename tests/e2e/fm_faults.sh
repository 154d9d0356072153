#!/usr/bin/env bash
# Fault soaks of `fm train` on a tiny char GPT (the fortunes corpus):
#   part "signals": SIGKILL at FM_SOAK_KILLS random instants (saves every step)
#     resumes to the losses and weights of an uninterrupted run; SIGTERM and
#     SIGINT stop with a checkpoint and exit 128 + signal; a run directory,
#     a token shard and caption-folder images removed mid-run.
#   part "disk" (mounts tmpfs; exits 77, a ctest skip, where that is refused):
#     a full disk during a checkpoint write, a read-only run directory.
#   usage: fm_faults.sh FM_BINARY REPO_ROOT SCRATCH_DIR signals|disk
#   FM_SOAK_KILLS (default 20) and FM_SOAK_SEED (default 1) set the soak;
#   bench/RESULTS.md (Fault soaks) has the long soak: 100 kills.
set -euo pipefail
fm=$1 root=$2 work=$3 part=$4
# A tmpfs left mounted by a killed earlier run would stop the rm.
{ grep -o " $work/[^ ]*" /proc/mounts || true; } | xargs -r umount -l
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"
FM=$fm "$root/tools/prepare-fortunes" data/fortunes > /dev/null
recipe=$root/experiments/gpt_char_tiny.ini
# One layer, 16 wide, batches of 8: a step takes a millisecond or two and a
# checkpoint write (120 KB, fsynced) is most of it, so kills land in writes.
tiny=(--model.n_layer=1 --model.d_model=16 --model.n_head=2 --train.batch_size=8 --train.warmup_steps=5
      --train.eval_every=0 --train.eval_steps=2 --train.log_every=1 --runtime.threads=1 --runtime.peak_gflops=1)
train() { "$fm" train "$recipe" "${tiny[@]}" "$@"; }
start() { "$fm" train "$recipe" "${tiny[@]}" "$@" & }  # in the background: $! is fm itself, not a subshell
step_of() { grep -o '"step":[0-9]*' "$1/metrics.jsonl" 2>/dev/null | tail -1 | cut -d: -f2; }  # the last logged step
newest() { ls "$1/checkpoints" | sed -n 's/^step_//p' | sort -n | tail -1; }                   # the newest step_N
# wait_step RUN_DIR N PID: until the run has logged step N (fails if the process ends first).
wait_step() {
  until [ "$(step_of "$1")" -ge "$2" ] 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || fail "$1 ended before step $2"
    sleep 0.005
  done
}
# wait_saved RUN_DIR N PID: until checkpoint step_N exists (a test without a fork: no lag).
wait_saved() {
  until [ -d "$1/checkpoints/step_$2" ]; do
    kill -0 "$3" 2>/dev/null || fail "$1 ended before step $2"
    sleep 0.001
  done
}
# same_as REF RUN STEPS: every logged loss, the final validation loss and the final weights are equal.
same_as() {
  diff <(losses "$1") <(losses "$2") > /dev/null || fail "$2: the training losses differ from $1's"
  [ "$(last "$1" val_loss)" = "$(last "$2" val_loss)" ] || fail "$2: the validation loss differs from $1's"
  cmp -s "$1/checkpoints/step_$3/model.safetensors" "$2/checkpoints/step_$3/model.safetensors" ||
    fail "$2: the final weights differ from $1's"
}

if [ "$part" = signals ]; then
  kills=${FM_SOAK_KILLS:-20}
  steps=$((10 * kills + 40))  # a kill costs at most ~6 steps of progress: the run outlasts the kills
  train --train.max_steps=$steps --run.dir=runs/ref > /dev/null

  # 1. SIGKILL soak. Every third kill comes at a random instant of start-up
  # (config.ini and metrics.jsonl rewrites, checkpoint reads); the rest once
  # the run has saved 1-5 more steps, after a random 0-9 ms (mid-step or
  # mid-save). Checkpoints but the newest two are pruned between kills, as a
  # retention policy would, to bound the disk the soak takes.
  t0=$(date +%s%N)
  train --train.max_steps=6 --run.dir=runs/probe > /dev/null
  startup_ms=$((($(date +%s%N) - t0) / 1000000))
  RANDOM=${FM_SOAK_SEED:-1}
  at_startup=0 at_step=0 at_save=0
  t0=$(date +%s%N)
  for ((k = 0; k < kills; k++)); do
    saved=$(newest runs/soak 2>/dev/null || true) temps=$(ls -a runs/soak/checkpoints 2>/dev/null | grep -c '\.tmp\.' || true)
    start --train.max_steps=$steps --train.save_every=1 --run.dir=runs/soak --resume > attempt.out 2>> soak.err
    pid=$!
    if ((k % 3 == 1)); then  # (the first waits for step_1: a run needs one checkpoint to resume)
      sleep "$(awk -v ms=$((RANDOM % startup_ms)) 'BEGIN { print ms / 1000 }')"
    else
      wait_saved runs/soak $((${saved:-0} + 1 + RANDOM % 5)) $pid
      sleep "$(awk -v ms=$((RANDOM % 10)) 'BEGIN { print ms / 1000 }')"
    fi
    kill -KILL $pid 2>/dev/null || true
    rc=0 && wait $pid 2> /dev/null || rc=$?
    # 137 = killed by SIGKILL: the run had not finished on its own.
    [ $rc = 137 ] || fail "kill $((k + 1)): fm train exited $rc before it was killed (raise the step count)"
    # A checkpoint's temp folder left behind: the kill hit a save.
    if [ "$(ls -a runs/soak/checkpoints 2>/dev/null | grep -c '\.tmp\.' || true)" -gt "$temps" ]; then at_save=$((at_save + 1))
    elif ! grep -q '^step ' attempt.out; then at_startup=$((at_startup + 1))  # no step's progress line
    else at_step=$((at_step + 1)); fi
    ls runs/soak/checkpoints | sed -n 's/^step_//p' | sort -n | head -n -2 | sed 's|^|runs/soak/checkpoints/step_|' | xargs -r rm -r
  done
  soak_s=$((($(date +%s%N) - t0) / 1000000000))
  killed_at=$(newest runs/soak)
  [ "$killed_at" -lt "$steps" ] || fail "the soak reached the last step before its last kill"
  train --train.max_steps=$steps --train.save_every=1 --run.dir=runs/soak --resume > /dev/null 2>> soak.err
  # No resume met a broken checkpoint (it would skip it and say so): the writes are atomic.
  [ ! -s soak.err ] || { sort soak.err | uniq -c >&2; fail "the SIGKILL soak wrote errors"; }
  same_as runs/ref runs/soak $steps
  echo "SIGKILL soak: $kills kills in ${soak_s} s (start-up $at_startup, mid-step $at_step," \
       "mid-save $at_save; step $killed_at of $steps at the last), then the same losses and weights as a straight run"
  ((at_save > 0)) || fail "no kill landed in a checkpoint write"

  # 2. SIGTERM and SIGINT: the step in progress ends, a checkpoint at that
  # step (no periodic saves here), one line, exit 128 + signal; --resume
  # then gives the straight run's numbers. (A script's background jobs
  # inherit SIGINT ignored; fm train installs its handler regardless.)
  for sig in TERM INT; do
    run=runs/sig$sig
    start --train.max_steps=$steps --train.save_every=0 --run.dir=$run > $sig.out 2> $sig.err
    pid=$!
    wait_step $run 5 $pid
    kill -$sig $pid
    rc=0 && wait $pid || rc=$?
    [ $rc = $((128 + $(kill -l $sig))) ] || fail "SIG$sig: exit $rc, not $((128 + $(kill -l $sig)))"
    [ ! -s $sig.err ] || { cat $sig.err >&2; fail "SIG$sig: fm train wrote to stderr"; }
    n=$(sed -n "s/^fm train: stopped by SIG$sig at step \([0-9]*\); checkpoint saved$/\1/p" $sig.out)
    [ -n "$n" ] || { tail -3 $sig.out >&2; fail "SIG$sig: no 'stopped by SIG$sig at step N; checkpoint saved' line"; }
    [ "$n" -ge 5 ] && [ "$n" -lt "$steps" ] || fail "SIG$sig: stopped at step $n"
    [ "$(newest $run)" = "$n" ] && [ "$(step_of $run)" = "$n" ] || fail "SIG$sig: the checkpoint or the log is not at step $n"
    train --train.max_steps=$steps --train.save_every=0 --run.dir=$run --resume > /dev/null
    same_as runs/ref $run $steps
    echo "SIG$sig: stopped at step $n with a checkpoint, exit $rc; resumed to the straight run's numbers"
  done
  # A second signal while stopping (1 ms later: two at once would merge
  # into one) ends the process at once; the newest checkpoint left is
  # whole, and --resume still gives the straight run.
  start --train.max_steps=$steps --train.save_every=1 --run.dir=runs/twice > twice.out
  pid=$!
  wait_step runs/twice 5 $pid
  kill -TERM $pid && sleep 0.001 && { kill -TERM $pid 2> /dev/null || true; }
  rc=0 && wait $pid || rc=$?
  [ $rc = 143 ] || fail "two SIGTERMs: exit $rc, not 143"
  grep -q "^fm train: stopped by" twice.out && how="stopped before the second" || how="ended at once"
  train --train.max_steps=$steps --train.save_every=1 --run.dir=runs/twice --resume > /dev/null
  same_as runs/ref runs/twice $steps
  echo "two SIGTERMs: $how, exit 143; resumed to the straight run's numbers"

  # 3. The run directory removed mid-run: one clear error naming it, not a
  # run that carries on without its log.
  start --train.max_steps=$steps --train.save_every=1 --run.dir=runs/gone > gone.out 2> err.txt
  pid=$!
  wait_step runs/gone 5 $pid
  rm -rf runs/gone 2> /dev/null || rm -rf runs/gone 2> /dev/null || true  # races the writer's new files
  rc=0 && wait $pid || rc=$?
  [ $rc = 1 ] || fail "run directory removed: exit $rc, not 1"
  [ "$(wc -l < err.txt)" = 1 ] && grep -qF "runs/gone/" err.txt || { cat err.txt >&2; fail "run directory removed: not one line naming it"; }
  echo "run directory removed: $(cat err.txt)"

  # 4. A token shard removed mid-run. Shards are memory-mapped and a mapping
  # outlives the unlink (Linux), so the run completes with the straight
  # run's numbers; a later start names the missing file.
  mkdir data/copy && cp data/fortunes/bytes_*_000.bin data/copy/
  shards=(--data.train=data/copy/bytes_train_000.bin --data.val=data/copy/bytes_val_000.bin)
  start --train.max_steps=$steps "${shards[@]}" --run.dir=runs/unlinked > /dev/null
  pid=$!
  wait_step runs/unlinked 5 $pid
  rm data/copy/bytes_train_000.bin data/copy/bytes_val_000.bin
  wait $pid || fail "a removed token shard stopped the run"
  same_as runs/ref runs/unlinked $steps
  expect_error "data/copy/bytes_train_000.bin" train --train.max_steps=$steps "${shards[@]}" --run.dir=runs/unlinked2
  echo "token shard removed mid-run: the run completes unchanged; the next start names the file"
  # ... and images removed mid-run from a caption folder, which is read
  # lazily: the run goes on without them, counts them ("skipped" in the
  # metrics) and names the first on stderr. (Needs a build with media.)
  if ! "$fm" prepare shapes --size 32 --split train --n 200 --seed 0 --out shapes/train > /dev/null 2> err.txt; then
    grep -qF "no image support" err.txt || { cat err.txt >&2; fail "fm prepare shapes"; }
    echo "images removed mid-run: not tested (fm has no image support)"
    echo "1 passed, 0 failed" && exit 0
  fi
  "$fm" prepare shapes --size 32 --split test --n 50 --seed 1 --out shapes/test > /dev/null
  sed -E 's/.*"caption":"([^"]*)".*/\1/' shapes/train/captions.jsonl > captions.txt
  "$fm" tokenizer train --vocab-size 320 --out shapes.tok captions.txt > /dev/null
  "$fm" train "$root/experiments/clip_shapes.ini" --model.vision_width=32 --model.vision_layers=1 --model.text_width=32 \
    --model.text_layers=1 --data.tokenizer=shapes.tok --data.train=shapes/train --data.val=shapes/test --train.batch_size=16 \
    --train.warmup_steps=5 --train.max_steps=200 --train.eval_every=0 --train.eval_samples=50 --train.log_every=1 \
    --runtime.threads=1 --runtime.peak_gflops=1 --run.dir=runs/images > /dev/null 2> images.err &
  pid=$!
  wait_step runs/images 5 $pid
  rm shapes/train/0000[0-4]*.png  # 50 of the 200
  wait $pid || { cat images.err >&2; fail "images removed mid-run stopped the run"; }
  skipped=$(last runs/images skipped)
  awk -v n="$skipped" 'BEGIN { exit !(n > 0) }' || fail "images removed mid-run: 'skipped' is $skipped"
  grep -q "^fm train: skipped .*cannot read image 'shapes/train/0000[0-4].\.png'" images.err ||
    { cat images.err >&2; fail "images removed mid-run: no message names one"; }
  echo "images removed mid-run: the run completes, $skipped reads skipped and named"
fi

if [ "$part" = disk ]; then
  mounts=()
  trap 'for m in ${mounts[@]+"${mounts[@]}"}; do umount -l "$m"; done' EXIT
  mnt() {  # mnt DIR OPTIONS: a tmpfs at DIR, or a skip where mounting is not permitted
    mkdir -p "$1"
    mount -t tmpfs -o "$2" tmpfs "$1" 2> /dev/null ||
      { echo "SKIP: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)"; exit 77; }
    mounts+=("$PWD/$1")
  }
  train --train.max_steps=40 --run.dir=runs/ref > /dev/null

  # 5. Disk full: a 1 MiB tmpfs holds a few 120 KB checkpoints, then a write
  # fails. One error line naming the file; the partial checkpoint is gone; the
  # one before it loads in place and resumes (in a roomy copy) to the straight run.
  mnt full size=1m
  expect_error "No space left on device" train --train.max_steps=40 --train.save_every=1 --run.dir=full/run
  grep -qF "full/run/" err.txt || fail "disk full: the error does not name the file: $(cat err.txt)"
  ! ls -a full/run/checkpoints | grep -q '\.tmp\.' || fail "disk full: a partial checkpoint was left behind"
  n=$(newest full/run)
  [ "$n" -ge 1 ] && [ "$n" -lt 40 ] || fail "disk full: newest checkpoint step_$n"
  "$fm" eval full/run | grep -qF "\"step\":$n," || fail "disk full: step_$n does not load in place"
  cp -r full/run runs/full
  train --train.max_steps=40 --train.save_every=1 --run.dir=runs/full --resume > full.out
  grep -qF "(step $n)" full.out || fail "disk full: --resume did not start from step_$n"
  same_as runs/ref runs/full 40
  echo "disk full: $(cut -c1-60 err.txt)...; step_$n intact and resumed to the straight run's numbers"

  # 6. Read-only run directories: a new run on a read-only file system, and
  # --resume of a run whose file system became read-only: one clear line.
  # (A file system cannot become read-only mid-run: a remount is refused
  # while files are open for writing, and root ignores permission bits.)
  mnt ro size=1m,ro
  expect_error "ro/run" train --train.max_steps=40 --run.dir=ro/run
  grep -qF "Read-only file system" err.txt || fail "read-only: the error does not say why: $(cat err.txt)"
  train --train.max_steps=40 --train.save_every=10 --run.stop_after=10 --run.dir=runs/half > /dev/null
  mnt rorun size=8m
  cp -r runs/half rorun/run
  mount -o remount,ro rorun
  expect_error "Read-only file system" train --train.max_steps=40 --train.save_every=10 --run.dir=rorun/run --resume
  grep -qF "rorun/run/" err.txt || fail "read-only resume: the error does not name the file: $(cat err.txt)"
  echo "read-only run directory: $(cat err.txt)"
  # Writable again, it resumes to the straight run's numbers.
  mount -o remount,rw rorun
  train --train.max_steps=40 --train.save_every=10 --run.dir=rorun/run --resume > /dev/null
  same_as runs/ref rorun/run 40
fi
echo "1 passed, 0 failed"

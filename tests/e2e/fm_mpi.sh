#!/usr/bin/env bash
# Data-parallel training under real MPI ranks (label mpi), on the fortunes corpus:
#   1. mpirun -np 2 with batch B takes the steps one rank takes with 2B
#      (train and validation losses equal to 1e-6), and with gradient
#      accumulation (no reduction but on the last micro-step); the same for
#      CLIP (features gathered) and for text-to-image (noise shared out);
#   2. a run of 2 ranks resumed on 1 rank (batch doubled) continues the losses
#      of a run that never stopped;
#   3. a rank killed mid-run ends the job within 60 s, the last checkpoint
#      still loads; a rank that hangs (SIGSTOP) makes the other fail with one
#      clear error after runtime.dist_timeout, and the job ends within 60 s.
#   usage: fm_mpi.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe)

FM=$fm "$root/tools/prepare-fortunes" data/fortunes > /dev/null
recipe=$root/experiments/gpt_char_tiny.ini
base=(--data.train='data/fortunes/bytes_train_*.bin' --data.val='data/fortunes/bytes_val_*.bin'
      --data.tokenizer=data/fortunes/bytes.tok --train.max_steps=20 --train.warmup_steps=5 --train.log_every=5
      --train.eval_every=10 --train.eval_steps=4 --train.save_every=10 --runtime.peak_gflops=50)
# same A B KEY: the KEY values of two runs agree to 1e-6 (relative), line by line.
same() {
  paste <(grep -o "\"$3\":[^,}]*" "$1/metrics.jsonl" | cut -d: -f2) <(grep -o "\"$3\":[^,}]*" "$2/metrics.jsonl" | cut -d: -f2) |
    awk -v k="$3" '{ n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-6 * ($1 < 0 ? -$1 : $1) + 1e-9) { print k " differs at line " n ": " $1 " vs " $2; bad = 1 } }
                   END { if (n == 0) { print "no " k; bad = 1 } exit bad }'
}

# 1. Two ranks of 8 == one rank of 16; with accumulation, 2 x (4 x 2) == 1 x (8 x 2).
"$fm" train "$recipe" "${base[@]}" --train.batch_size=16 --run.dir=runs/one > /dev/null
"${mpi[@]}" -np 2 "$fm" train "$recipe" "${base[@]}" --train.batch_size=8 --run.dir=runs/two > two.log
grep -q "x 2 ranks (mpi)" two.log || fail "the 2-rank run does not say it runs on 2 ranks"
[ "$(grep -c '^step' two.log)" -gt 0 ] && [ "$(grep -c 'fm train: done' two.log)" = 1 ] || fail "rank 1 printed progress too"
same runs/one runs/two train_loss || fail "2 ranks x 8 do not take the steps of 1 rank x 16"
same runs/one runs/two val_loss || fail "the 2-rank validation loss differs"
"$fm" train "$recipe" "${base[@]}" --train.batch_size=8 --train.grad_accum=2 --run.dir=runs/acc1 > /dev/null
"${mpi[@]}" -np 2 "$fm" train "$recipe" "${base[@]}" --train.batch_size=4 --train.grad_accum=2 --run.dir=runs/acc2 > /dev/null
same runs/acc1 runs/acc2 train_loss || fail "accumulation under 2 ranks differs"
echo "data parallel: 2 ranks x 8 == 1 rank x 16 (train and val losses), also with accumulation"

# 1b. CLIP: the contrastive loss gathers both towers' features from every rank
# (with gradient), so 2 ranks x 16 pairs take the steps of 1 rank x 32.
"$fm" prepare shapes --size 32 --split train --n 400 --seed 0 --out shapes/train > /dev/null
"$fm" prepare shapes --size 32 --split test --n 64 --seed 1 --out shapes/test > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' shapes/train/captions.jsonl > captions.txt
"$fm" tokenizer train --vocab-size 320 --out shapes.tok captions.txt > /dev/null
clip=(--model.vision_width=32 --model.vision_layers=1 --model.text_width=32 --model.text_layers=1
      --model.context_length=20 --data.tokenizer=shapes.tok --data.train=shapes/train --data.val=shapes/test
      --data.workers=1 --train.max_steps=10 --train.warmup_steps=2 --train.log_every=5 --train.eval_every=10
      --train.save_every=10 --train.eval_samples=64 --runtime.threads=1 --runtime.peak_gflops=100)
"$fm" train "$root/experiments/clip_shapes.ini" "${clip[@]}" --train.batch_size=32 --run.dir=runs/clip1 > /dev/null
"${mpi[@]}" -np 2 "$fm" train "$root/experiments/clip_shapes.ini" "${clip[@]}" --train.batch_size=16 --run.dir=runs/clip2 > /dev/null
same runs/clip1 runs/clip2 train_loss || fail "CLIP on 2 ranks x 16 does not take the steps of 1 rank x 32"
same runs/clip1 runs/clip2 acc_i2t || fail "CLIP's in-batch accuracy differs on 2 ranks"
echo "CLIP: 2 ranks x 16 == 1 rank x 32 (features gathered with gradient)"
# 1c. Text-to-image: each rank takes its rows of the world's noise, times and
# caption drops, so 2 ranks x 8 take the steps of 1 rank x 16.
t2i=(--model.width=32 --model.layers=1 --model.heads=2 --model.text_width=32 --model.text_layers=1
     --data.tokenizer=shapes.tok --data.train=shapes/train --data.val=shapes/test --data.workers=1
     --train.max_steps=10 --train.warmup_steps=2 --train.log_every=5 --train.eval_every=10 --train.save_every=10
     --train.eval_samples=32 --eval.images=0 --eval.samples=0 --diffusion.steps=4 --runtime.threads=1
     --runtime.peak_gflops=100)
"$fm" train "$root/experiments/t2i_shapes.ini" "${t2i[@]}" --train.batch_size=16 --run.dir=runs/t2i1 > /dev/null
"${mpi[@]}" -np 2 "$fm" train "$root/experiments/t2i_shapes.ini" "${t2i[@]}" --train.batch_size=8 --run.dir=runs/t2i2 > /dev/null
same runs/t2i1 runs/t2i2 train_loss || fail "text-to-image on 2 ranks x 8 does not take the steps of 1 rank x 16"
same runs/t2i1 runs/t2i2 val_loss || fail "the 2-rank text-to-image validation loss differs"
echo "text-to-image: 2 ranks x 8 == 1 rank x 16 (noise, times and caption drops shared out by rank)"

# 2. Stop a 2-rank run at step 10 and resume it on one rank with the doubled batch.
"${mpi[@]}" -np 2 "$fm" train "$recipe" "${base[@]}" --train.batch_size=8 --run.dir=runs/moved --run.stop_after=10 > /dev/null
"$fm" train "$recipe" "${base[@]}" --train.batch_size=16 --run.dir=runs/moved --resume > /dev/null
same runs/one runs/moved train_loss || fail "2 ranks resumed on 1 do not continue the losses"
echo "resume: a 2-rank run continued on 1 rank gives the losses of a run that never stopped"

# 2b. ZeRO-1 (AdamW state sharded) takes plain data parallelism's steps; a
# 4-rank ZeRO run stopped at step 10 continues on 2 ranks (batch doubled)
# with the losses of the run that never stopped.
"${mpi[@]}" -np 2 "$fm" train "$recipe" "${base[@]}" --train.batch_size=8 --train.zero_stage=1 --run.dir=runs/zero2 > /dev/null
same runs/two runs/zero2 train_loss || fail "ZeRO-1 on 2 ranks differs from plain data parallelism"
same runs/two runs/zero2 val_loss || fail "ZeRO-1's validation loss differs"
"${mpi[@]}" -np 4 "$fm" train "$recipe" "${base[@]}" --train.batch_size=4 --train.zero_stage=1 --run.dir=runs/zero42 --run.stop_after=10 > /dev/null
"${mpi[@]}" -np 2 "$fm" train "$recipe" "${base[@]}" --train.batch_size=8 --train.zero_stage=1 --run.dir=runs/zero42 --resume > /dev/null
same runs/one runs/zero42 train_loss || fail "a 4-rank ZeRO-1 run resumed on 2 ranks does not continue the losses"
echo "ZeRO-1: equal to plain data parallelism; 4 ranks resumed on 2 continue the same losses"

# The pid of rank R of the job whose command line holds TEXT.
rank_pid() {
  for p in $(pgrep -f "$2"); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return 0; }
  done
  return 0
}
long=("${base[@]}" --train.batch_size=8 --train.max_steps=100000 --train.eval_every=0 --train.log_every=50)

# 3a. SIGKILL rank 1 after the first checkpoint: the job ends within 60 s.
"${mpi[@]}" -np 2 "$fm" train "$recipe" "${long[@]}" --run.dir=runs/killed > killed.log 2>&1 &
job=$!
for _ in $(seq 600); do [ -d runs/killed/checkpoints/step_10 ] && break; sleep 0.1; done
[ -d runs/killed/checkpoints/step_10 ] || { kill -9 $job; fail "no checkpoint within 60 s"; }
victim=$(rank_pid 1 runs/killed)
[ -n "$victim" ] || { kill -9 $job; fail "rank 1 not found"; }
kill -9 "$victim"
t0=$(date +%s)
for _ in $(seq 600); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then pkill -9 -f runs/killed; fail "the job still runs 60 s after rank 1 was killed"; fi
wait $job && fail "the job exited 0 after a rank was killed" || true
echo "killed rank: the job ended $(( $(date +%s) - t0 )) s after rank 1 was killed"
"$fm" eval runs/killed > /dev/null || fail "the last checkpoint of the killed run does not load"

# 3b. SIGSTOP rank 1 (a hang): rank 0 gives up after runtime.dist_timeout and ends the job.
"${mpi[@]}" -np 2 "$fm" train "$recipe" "${long[@]}" --runtime.dist_timeout=10 --run.dir=runs/hung > hung.log 2>&1 &
job=$!
for _ in $(seq 600); do [ -d runs/hung/checkpoints/step_10 ] && break; sleep 0.1; done
victim=$(rank_pid 1 runs/hung)
[ -n "$victim" ] || { kill -9 $job; fail "rank 1 not found"; }
kill -STOP "$victim"
t0=$(date +%s)
for _ in $(seq 600); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then kill -9 "$victim"; pkill -9 -f runs/hung; fail "the job still runs 60 s after rank 1 hung"; fi
kill -9 "$victim" 2>/dev/null || true
grep -q "did not complete within 10 s on rank 0 of 2" hung.log || { tail -5 hung.log; fail "rank 0 did not report the hung collective"; }
echo "hung rank: rank 0 reported it and the job ended $(( $(date +%s) - t0 )) s after rank 1 stopped"
echo "1 passed, 0 failed"

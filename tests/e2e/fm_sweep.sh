#!/usr/bin/env bash
# fm sweep and fm scaling fit end to end, on a 2x2 grid of very tiny
# byte-level GPTs (fortunes corpus; seconds in all):
#   1. the sweep trains every point into its own run directory, resuming a
#      half-done one, and sweep.jsonl holds each run's grid values,
#      parameters, samples, tokens, FLOPs and losses;
#   2. run again, it skips every finished point and changes nothing; other
#      overrides into the same directory are refused;
#   3. two processes (mpirun -np 2, where it is installed) share the points
#      out, each trained once, to the same losses;
#   4. fm scaling fit prints the power law and its hold-out, writes the
#      results JSON and, with PLplot, the PNG; bad requests fail cleanly.
#   usage: fm_sweep.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

# The byte-level shards only (the BPE of tools/prepare-fortunes is not needed here).
find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' ! -name 'ascii-art' ! -name 'art' |
  sort | xargs cat > fortunes.txt
"$fm" tokenizer train --vocab-size 257 --out bytes.tok fortunes.txt > /dev/null
"$fm" prepare text --tokenizer bytes.tok --out . --name bytes --val-fraction 0.1 fortunes.txt > /dev/null
recipe=$root/experiments/gpt_char_tiny.ini
tiny=(--data.train='bytes_train_*.bin' --data.val='bytes_val_*.bin' --data.tokenizer=bytes.tok
      --model.n_layer=1 --model.n_head=2 --model.block_size=32 --train.batch_size=8 --train.warmup_steps=5
      --train.eval_every=0 --train.eval_steps=2 --train.log_every=10 --train.save_every=0
      --runtime.threads=1 --runtime.peak_gflops=10)
grid="model.d_model=16,32 train.max_steps=20,40"

# 1. One point half done beforehand (10 of its 40 steps), then the sweep.
"$fm" train "$recipe" "${tiny[@]}" --model.d_model=32 --train.max_steps=40 --run.dir=sw/d_model32-max_steps40 \
  --run.stop_after=10 > /dev/null
"$fm" sweep "$recipe" --grid "$grid" --out sw "${tiny[@]}" > sweep.log
grep -qF "resumed from sw/d_model32-max_steps40/checkpoints/step_10" sweep.log || fail "the half-done point was not resumed"
[ "$(grep -c '"train_loss"' sw/d_model32-max_steps40/metrics.jsonl)" = 40 ] || fail "the resumed point did not log steps 1..40 once each"
[ "$(wc -l < sw/sweep.jsonl)" = 4 ] || fail "sweep.jsonl has $(wc -l < sw/sweep.jsonl) lines, not 4"
field() { grep "\"point\":\"$1\"" sw/sweep.jsonl | grep -o "\"$2\":[0-9.e+-]*" | head -1 | cut -d: -f2; }  # POINT KEY
for p in d_model16-max_steps20 d_model16-max_steps40 d_model32-max_steps20 d_model32-max_steps40; do
  [ -f "sw/$p/summary.json" ] || fail "$p has no summary.json"
  for k in params params_total steps samples tokens flops val_loss train_loss; do
    [ -n "$(field $p $k)" ] || fail "$p: sweep.jsonl lacks $k"
  done
done
grep -qF '"values":{"model.d_model":"32","train.max_steps":"40"}' sw/sweep.jsonl || fail "the grid values are missing"
[ "$(field d_model16-max_steps40 samples)" = 320 ] && [ "$(field d_model16-max_steps40 tokens)" = 10240 ] ||
  fail "samples or tokens of 40 steps of 8 x 32 tokens are wrong"
awk -v a="$(field d_model32-max_steps20 flops)" -v b="$(field d_model32-max_steps40 flops)" \
  -v p="$(field d_model16-max_steps20 params)" -v q="$(field d_model32-max_steps20 params)" \
  -v t="$(field d_model32-max_steps20 params_total)" \
  'BEGIN { exit !(b == 2 * a && q > p && t > q) }' || fail "FLOPs do not double with the steps, or parameters are off"
# The larger model and the longer run each reach a lower validation loss.
awk -v a="$(field d_model16-max_steps20 val_loss)" -v b="$(field d_model32-max_steps40 val_loss)" 'BEGIN { exit !(b < a) }' ||
  fail "the largest run did not learn more than the smallest"
echo "sweep: 4 points, one resumed"

# 2. Again: every point skipped, nothing rewritten.
before=$(find sw -type f | sort | xargs sha256sum)
"$fm" sweep "$recipe" --grid "$grid" --out sw "${tiny[@]}" > again.log
[ "$(grep -c 'is done; skipped' again.log)" = 4 ] || fail "a second sweep did not skip the 4 finished points"
after=$(find sw -type f | sort | xargs sha256sum)
[ "$before" = "$after" ] || fail "a second sweep changed the sweep directory"
expect_error "was swept with other overrides (added now: --train.lr=1e-3" \
  "$fm" sweep "$recipe" --grid "$grid" --out sw "${tiny[@]}" --train.lr=1e-3
expect_error "unknown key 'model.d_modl' (did you mean 'model.d_model'?)" \
  "$fm" sweep "$recipe" --grid "model.d_modl=16,32" --out bad "${tiny[@]}"
expect_error "grid axis 'model.d_model' is not KEY=V1,V2" "$fm" sweep "$recipe" --grid "model.d_model" --out bad "${tiny[@]}"
expect_error "each point's run.dir is SWEEP_DIR/<point>" "$fm" sweep "$recipe" --grid "$grid" --run.dir=x "${tiny[@]}"
[ ! -e bad ] || fail "a refused sweep created its directory"
echo "sweep again: all skipped; bad grids refused"

# 3. Processes share a sweep out: two ranks of mpirun (where it is
#    installed), else two sweeps side by side. Every point is trained once,
#    to the losses of the sequential sweep.
if command -v mpirun > /dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
  mpirun --oversubscribe -np 2 "$fm" sweep "$recipe" --grid "$grid" --out swm "${tiny[@]}" > shared.log
else
  "$fm" sweep "$recipe" --grid "$grid" --out swm "${tiny[@]}" > shared.log &
  "$fm" sweep "$recipe" --grid "$grid" --out swm "${tiny[@]}" >> shared.log
  wait $!
fi
[ "$(grep -c ': point [1-4] of 4: ' shared.log)" = 4 ] || { cat shared.log >&2; fail "the shared sweep did not train each point once"; }
losses_of() { grep -o '"point":"[^"]*"\|"val_loss":[0-9.e+-]*' "$1/sweep.jsonl" | paste - - | sort; }
# The resumed point's losses equal a straight run's too, so all four agree.
diff <(losses_of sw) <(losses_of swm) || fail "the shared sweep's runs differ from the sequential sweep"
echo "shared sweep: each point once, the same losses"

# 4. The fits.
"$fm" scaling fit sw --x compute --bootstrap 50 --plot fit.png > fit.log 2> fit.err || {
  # A build without PLplot says so and draws nothing; the fit itself must still work.
  grep -qF "built without PLplot" fit.err || { cat fit.err >&2; fail "fm scaling fit failed"; }
  "$fm" scaling fit sw --x compute --bootstrap 50 > fit.log
}
grep -qF "power law, L = E + A x^-alpha: 4 points" fit.log || { cat fit.log >&2; fail "no power-law fit printed"; }
grep -qF "hold-out: fitted on the 3 runs below" fit.log || fail "no hold-out prediction printed"
grep -qF "broken law: skipped (4 distinct x values; it has 6 parameters)" fit.log || fail "the broken law was not skipped"
grep -qF '"alpha"' sw/scaling_compute.json && grep -qF '"holdout"' sw/scaling_compute.json ||
  fail "sw/scaling_compute.json lacks the fit"
[ -f fit.png ] && png fit.png && echo "plot: fit.png"
"$fm" scaling fit sw --x params --where "train.max_steps=40" --bootstrap 0 > where.log
grep -qF "2 runs of sw" where.log || fail "--where did not keep the 2 runs of 40 steps"
expect_error "the broken law has 6 parameters" "$fm" scaling fit sw --law broken
expect_error "--where: 'model.width' is not a key of the sweep's grid" "$fm" scaling fit sw --where model.width=3
expect_error "--x must be params, params_total, data or compute" "$fm" scaling fit sw --x flops
expect_error "has no figure 'accuracy'" "$fm" scaling fit sw --y accuracy
expect_error "cannot read nowhere/sweep.jsonl" "$fm" scaling fit nowhere
echo "1 passed, 0 failed"

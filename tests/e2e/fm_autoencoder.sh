#!/usr/bin/env bash
# End-to-end test of the autoencoder kind: 64-pixel captioned shapes made by
# `fm prepare shapes`, a tiny KL autoencoder whose held-out reconstruction
# improves (L1 falls, PSNR rises), latent statistics reported, sample grids
# in samples/ and TensorBoard, resume equality, fm eval with the recipe's
# target, and bad configs (one clear line).
# Then latent diffusion on its latents (model.autoencoder = RUN_DIR).
#   usage: fm_autoencoder.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

"$fm" prepare shapes --size 64 --split train --n 600 --seed 0 --out shapes/train > /dev/null
"$fm" prepare shapes --size 64 --split test --n 64 --seed 1 --out shapes/test > /dev/null
recipe=$root/experiments/autoencoder_shapes64.ini
tiny=(--model.base_channels=8 --model.groups=4 --data.train=shapes/train --data.val=shapes/test
      --train.batch_size=16 --train.warmup_steps=10 --train.log_every=25 --train.eval_samples=64 --eval.samples=4
      --data.workers=1 --runtime.threads=1 --runtime.peak_gflops=100)

# 1. A tiny autoencoder learns: held-out L1 falls and PSNR rises between the
#    first and the last evaluation; the latents' std is reported.
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=150 --train.eval_every=50 --train.save_every=150 \
  --train.lr=2e-3 --run.dir=runs/tiny > train.log
l0=$(first runs/tiny val_recon_l1) l1=$(last runs/tiny val_recon_l1)
p0=$(first runs/tiny psnr) p1=$(last runs/tiny psnr) s=$(last runs/tiny latent_std)
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < 0.85 * a) }' || fail "val_recon_l1 did not fall: $l0 -> $l1"
awk -v a="$p0" -v b="$p1" 'BEGIN { exit !(b > a + 0.5) }' || fail "psnr did not rise: $p0 -> $p1"
awk -v a="$s" 'BEGIN { exit !(a > 0) }' || fail "latent_std is $s"
grep -q "img/s" train.log || fail "the progress line does not count images"
png runs/tiny/samples/step_150_reconstructions.png
grep -qa "reconstructions" runs/tiny/events.out.tfevents.* || fail "the sample grid is not in TensorBoard"
"$fm" eval runs/tiny > eval.json
grep -qF '"target":"psnr >= 30"' eval.json || { cat eval.json; fail "fm eval does not show the recipe's target"; }
grep -q '"latent_std":' eval.json || { cat eval.json; fail "fm eval does not report latent_std"; }
echo "tiny autoencoder: val_recon_l1 $l0 -> $l1, psnr $p0 -> $p1, latent_std $s"

# 2. Resume: 2N steps straight equal N, a stop, and N more (the posterior's noise stream included).
short=("${tiny[@]}" --train.max_steps=8 --train.warmup_steps=2 --train.eval_every=0 --train.save_every=4)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=4 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
echo "resume: identical losses"

# 3. Latent diffusion on the tiny autoencoder: a DiT over its 16x16 latents
#    (scaled by 1 / latent_std from the run's metrics), images decoded to 64 px.
sed -E 's/.*"caption":"([^"]*)".*/\1/' shapes/train/captions.jsonl > captions.txt
"$fm" tokenizer train --vocab-size 320 --out shapes.tok captions.txt > /dev/null
t2i=(--model.autoencoder=runs/tiny --model.image_size=64 --model.patch_size=2 --model.width=32 --model.layers=1
     --model.heads=2 --model.text_width=32 --model.text_layers=1 --data.tokenizer=shapes.tok
     --data.train=shapes/train --data.val=shapes/test --train.batch_size=8 --train.max_steps=6 --train.warmup_steps=2
     --train.eval_every=6 --train.eval_samples=16 --eval.images=4 --eval.samples=4 --diffusion.steps=3
     --data.workers=1 --runtime.threads=1 --runtime.peak_gflops=100)
"$fm" train "$root/experiments/t2i_shapes.ini" "${t2i[@]}" --run.dir=runs/latent > /dev/null
grep -q '^latent_size = 16' runs/latent/config.ini || fail "latent_size is not 16 in the latent run's config"
grep -q '^latent_scale = ' runs/latent/config.ini || fail "no latent_scale in the latent run's config"
"$fm" generate image --run runs/latent --prompt "a large red circle on the left" --steps 3 --out latent.png > /dev/null 2>&1
png latent.png
[ "$(head -c 24 latent.png | tail -c 8 | od -An -tx1 | tr -d ' \n')" = 0000004000000040 ] || fail "latent.png is not 64 x 64"
expect_error "not an autoencoder run" "$fm" train "$root/experiments/t2i_shapes.ini" "${t2i[@]}" --model.autoencoder=runs/latent --run.dir=runs/bad0
echo "latent diffusion: trained, generated 64 x 64"

# 4. Bad configs: one clear line.
expect_error "not an integer" "$fm" train "$recipe" "${short[@]}" --model.channel_mult=1,x --run.dir=runs/bad1
expect_error "not a multiple of the downsampling factor" "$fm" train "$recipe" "${short[@]}" --model.image_size=66 --run.dir=runs/bad2
expect_error "autoencoder.kl_weight" "$fm" train "$recipe" "${short[@]}" --autoencoder.kl_weight=-1 --run.dir=runs/bad3
echo "1 passed, 0 failed"

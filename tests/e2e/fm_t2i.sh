#!/usr/bin/env bash
# End-to-end test of the diffusion kind: captioned shapes made by `fm
# prepare shapes`, a tiny text-to-image DiT whose samples must show the
# captioned colours (judged by the shapes checker's detector, which shares
# nothing with the model), sample grids in TensorBoard, resume equality,
# fm eval, `fm generate image` (one prompt, a grid, a captions.jsonl), the
# text2image example, and bad inputs (one clear line, nothing written).
#   usage: fm_t2i.sh FM_BINARY TEXT2IMAGE_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 text2image=$2 root=$3 work=$4
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

"$fm" prepare shapes --size 32 --split train --n 3000 --seed 0 --out shapes/train > /dev/null
"$fm" prepare shapes --size 32 --split test --n 200 --seed 1 --out shapes/test > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' shapes/train/captions.jsonl > captions.txt
"$fm" tokenizer train --vocab-size 320 --out shapes.tok captions.txt > /dev/null
recipe=$root/experiments/t2i_shapes.ini
tiny=(--model.width=96 --model.layers=3 --model.heads=4 --model.text_width=64 --model.text_layers=1
      --data.tokenizer=shapes.tok --data.train=shapes/train --data.val=shapes/test --train.batch_size=32
      --train.warmup_steps=20 --train.log_every=50 --train.eval_samples=64 --eval.images=32 --eval.samples=4
      --diffusion.steps=12 --runtime.threads=1 --runtime.peak_gflops=100)

# 1. A tiny DiT learns: the validation loss falls and generated images show
#    the captioned colours far above chance (a model ignoring the caption
#    matches 1 in 8 one-shape and 1 in 28 two-shape captions, about 0.08):
#    colour is the first thing the detector can read that only the caption says.
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=400 --train.eval_every=200 --train.save_every=200 \
  --train.lr=2e-3 --run.dir=runs/tiny > train.log
v0=$(first runs/tiny val_loss) v1=$(last runs/tiny val_loss)
awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(b < a) }' || fail "val_loss did not fall: $v0 -> $v1"
grep -q "img/s" train.log || fail "the progress line does not count images"
ls runs/tiny/samples/step_400_samples.png > /dev/null || fail "no sample grid at the last evaluation"
png runs/tiny/samples/step_400_samples.png
grep -qa "samples" runs/tiny/events.out.tfevents.* || fail "the sample grid is not in TensorBoard"
"$fm" eval runs/tiny --eval.images=96 > eval.json
colour=$(grep -o '"adherence_colour":[0-9.e-]*' eval.json | cut -d: -f2)
awk -v a="$colour" 'BEGIN { exit !(a > 0.25) }' || { cat eval.json; fail "captioned colours in $colour of images, not above 0.25"; }
grep -qF '"target":"adherence >= 0.9"' eval.json || { cat eval.json; fail "fm eval does not show the recipe's target"; }
echo "tiny t2i: val_loss $v0 -> $v1, colour right in $colour of generated images"

# 2. Resume: 2N steps straight equal N, a stop, and N more (EMA, noise and dropout streams included).
short=("${tiny[@]}" --train.max_steps=12 --train.warmup_steps=4 --train.eval_every=0 --train.save_every=6)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=6 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
echo "resume: identical losses"

# 3. fm generate image: one prompt, a grid, a captions.jsonl; the example.
"$fm" generate image --run runs/tiny --prompt "a large red circle on the left" --steps 8 --out one.png > /dev/null
png one.png
"$fm" generate image --run runs/tiny --prompt "a small blue square at the top" --n 4 --sampler flow_heun --steps 4 --out grid.png > /dev/null
png grid.png
head -n 5 shapes/test/captions.jsonl > five.jsonl && mkdir gen
"$fm" generate image --run runs/tiny --prompts five.jsonl --steps 4 --out gen > /dev/null
[ "$(ls gen/*.png | wc -l)" = 5 ] || fail "--prompts did not write one PNG per line"
"$text2image" --run runs/tiny --prompt "a large green square in the center" --steps 4 --out example.png > /dev/null
png example.png
echo "generate: one, grid, captions.jsonl, example"

# 4. The frozen text tower of a CLIP run as the caption encoder: its tokenizer,
#    context and widths come from the CLIP run; its weights stay out of the
#    diffusion run's checkpoint and do not change.
"$fm" train "$root/experiments/clip_shapes.ini" --model.vision_width=32 --model.vision_layers=1 --model.text_width=32 \
  --model.text_layers=1 --model.embed_dim=16 --model.context_length=24 --data.tokenizer=shapes.tok --data.train=shapes/train \
  --data.val=shapes/test --train.batch_size=16 --train.max_steps=4 --train.warmup_steps=1 --train.eval_every=4 \
  --train.eval_samples=32 --runtime.threads=1 --runtime.peak_gflops=100 --run.dir=runs/clip > /dev/null
before=$(md5sum < runs/clip/checkpoints/step_4/model.safetensors)
"$fm" train "$recipe" "${short[@]}" --model.text_encoder=runs/clip --run.dir=runs/clip_text > /dev/null
[ "$(md5sum < runs/clip/checkpoints/step_4/model.safetensors)" = "$before" ] || fail "the CLIP run changed"
grep -q '^pooled_dim = 16' runs/clip_text/config.ini || fail "the pooled width is not the CLIP run's embed_dim"
! grep -aq 'token_embedding' runs/clip_text/checkpoints/step_12/model.safetensors || fail "the frozen tower was saved with the DiT"
"$fm" generate image --run runs/clip_text --prompt "a large red circle on the left" --steps 2 --out clip_text.png > /dev/null 2>&1
png clip_text.png
echo "clip text tower: trained, generated"

# 5. Bad input: one clear line, nothing written.
long=$(printf 'a large red circle on the left %.0s' 1 2 3 4 5 6)
expect_error "prompt is empty" "$fm" generate image --run runs/tiny --prompt "" --out bad.png
expect_error "the model reads at most" "$fm" generate image --run runs/tiny --prompt "$long" --out bad.png
expect_error "--steps must be at least 1" "$fm" generate image --run runs/tiny --prompt "a red circle" --steps 0 --out bad.png
expect_error "--cfg must be" "$fm" generate image --run runs/tiny --prompt "a red circle" --cfg -1 --out bad.png
expect_error "not a directory" "$fm" generate image --run runs/tiny --prompt "a red circle" --out nowhere/bad.png
expect_error "is not one of" "$fm" generate image --run runs/tiny --prompt "a red circle" --sampler nope --out bad.png
printf '{"file": "a.png", "caption": "a large red circle on the left"}\n{"file": "b.png", "caption": ""}\n' > half.jsonl
mkdir half && expect_error "prompt is empty" "$fm" generate image --run runs/tiny --prompts half.jsonl --out half
[ -z "$(ls half)" ] || fail "a failed --prompts run wrote files"
mkdir -p notdiff/checkpoints && printf '[task]\nkind = clip\n' > notdiff/config.ini
expect_error "not a diffusion or mixed run" "$fm" generate image --run notdiff --prompt "a red circle" --out bad.png
[ ! -e bad.png ] || fail "a refused generation wrote bad.png"
expect_error "diffusion.cond_drop" "$fm" train "$recipe" "${short[@]}" --diffusion.cond_drop=1.5 --run.dir=runs/baddrop
expect_error "eval.checker" "$fm" train "$recipe" "${short[@]}" --eval.checker=eyeball --run.dir=runs/badchecker
expect_error "is not one of" "$fm" train "$recipe" "${short[@]}" --diffusion.sampler=nope --run.dir=runs/badsampler
echo "1 passed, 0 failed"

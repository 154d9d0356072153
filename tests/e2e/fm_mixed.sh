#!/usr/bin/env bash
# End-to-end test of the mixed kind: one tiny transformer on captioned shapes
# in both directions (captioning and image generation). It learns (both
# losses fall), logs each modality's loss, reports both directions' figures,
# resumes exactly (its noise and layout streams are in the train state), and
# the same run directory serves fm generate image, fm caption, fm generate
# text and fm eval. Bad configs give one clear line.
#   usage: fm_mixed.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

"$fm" prepare shapes --size 32 --split train --n 600 --seed 0 --out shapes/train > /dev/null
"$fm" prepare shapes --size 32 --split test --n 32 --seed 1 --out shapes/test > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' shapes/train/captions.jsonl > captions.txt
"$fm" tokenizer train --vocab-size 320 --out shapes.tok captions.txt > /dev/null
recipe=$root/experiments/mixed_shapes.ini
tiny=(--model.width=48 --model.layers=2 --model.heads=2 --model.patch_size=8 --data.tokenizer=shapes.tok
      --data.train=shapes/train --data.val=shapes/test --train.batch_size=16 --train.warmup_steps=10
      --train.log_every=10 --train.eval_samples=32 --eval.images=8 --eval.samples=4 --diffusion.steps=4
      --data.workers=1 --runtime.threads=1 --runtime.peak_gflops=100)

# 1. Both directions learn; each modality's loss is logged; both directions' figures are reported.
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=120 --train.eval_every=60 --train.save_every=120 \
  --train.lr=2e-3 --run.dir=runs/tiny > train.log
t0=$(first runs/tiny text_loss) t1=$(last runs/tiny text_loss)
i0=$(first runs/tiny image_loss) i1=$(last runs/tiny image_loss)
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b < 0.6 * a) }' || fail "text_loss did not fall: $t0 -> $t1"
awk -v a="$i0" -v b="$i1" 'BEGIN { exit !(b < 0.9 * a) }' || fail "image_loss did not fall: $i0 -> $i1"
v0=$(first runs/tiny val_text_loss) v1=$(last runs/tiny val_text_loss)
awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(b < a) }' || fail "val_text_loss did not fall: $v0 -> $v1"
for key in val_image_loss exact_one adherence adherence_colour bleu4; do
  grep -q "\"$key\":" runs/tiny/metrics.jsonl || fail "no $key in metrics.jsonl"
done
grep -q "img/s" train.log || fail "the progress line does not count images"
png runs/tiny/samples/step_120_samples.png
grep -q "captioned" runs/tiny/samples/step_120_prompts_and_captions.txt || fail "no captions among the samples"
echo "tiny mixed model: text_loss $t0 -> $t1, image_loss $i0 -> $i1, val_text_loss $v0 -> $v1"

# 2. Resume: 2N steps straight equal N, a stop, and N more.
short=("${tiny[@]}" --train.max_steps=8 --train.warmup_steps=2 --train.eval_every=0 --train.save_every=4)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=4 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
echo "resume: identical losses"

# 3. One run directory, every direction.
"$fm" generate image --run runs/tiny --prompt "a large red circle on the left" --n 4 --steps 3 --out drawn.png > /dev/null 2>&1
png drawn.png
"$fm" caption --run runs/tiny shapes/test/000000.png shapes/test/000001.png > captions.jsonl
[ "$(grep -c '"caption":' captions.jsonl)" = 2 ] || { cat captions.jsonl; fail "fm caption did not caption 2 images"; }
"$fm" generate text --run runs/tiny --prompt "a small" --max-new-tokens 8 > text.txt
grep -q "^a small" text.txt || { cat text.txt; fail "fm generate text did not continue the prompt"; }
"$fm" eval runs/tiny > eval.json
for key in exact adherence val_loss; do grep -q "\"$key\":" eval.json || { cat eval.json; fail "fm eval lacks $key"; }; done
echo "generate image, caption, generate text, eval: one run"

# 4. Bad configs and uses: one clear line each.
expect_error "mixed.caption_share" "$fm" train "$recipe" "${short[@]}" --mixed.caption_share=2 --run.dir=runs/bad1
expect_error "more than the row length" "$fm" train "$recipe" "${short[@]}" --mixed.row_length=20 --run.dir=runs/bad2
expect_error "is a 'mixed' run, not a music run" "$fm" generate music --run runs/tiny --prompt "a slow melody" --out x.wav
expect_error "cosine decay" "$fm" train "$recipe" "${short[@]}" --train.max_steps=5 --train.warmup_steps=10 --run.dir=runs/bad3
[ ! -e runs/bad3/config.ini ] || fail "a config error left runs/bad3/config.ini behind"
echo "bad configs: one clear line each, nothing written"

# 5. Melodies in the same model: a tiny codec's tokens as audio segments
#    (music: [caption BOA] steps [EOA]; describe: [BOA] steps [EOA caption]).
#    The audio loss is logged and falls; descriptions and played clips are judged.
"$fm" prepare melodies --split train --n 64 --seed 0 --out mel/train > /dev/null
"$fm" prepare melodies --split val --n 4 --seed 1 --out mel/val > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' mel/train/captions.jsonl >> captions.txt
"$fm" tokenizer train --vocab-size 400 --out both.tok captions.txt > /dev/null
"$fm" train "$root/experiments/codec_melodies.ini" --runtime.threads=1 --runtime.peak_gflops=100 --data.train=mel/train \
  --data.val=mel/val --model.channels=8 --model.dim=16 --model.n_codebooks=2 --model.codebook_size=32 --train.batch_size=4 \
  --train.max_steps=20 --train.warmup_steps=2 --train.eval_every=0 --train.save_every=20 --run.dir=runs/codec > /dev/null
"$fm" train "$recipe" "${tiny[@]}" --data.tokenizer=both.tok --model.codec=runs/codec --data.audio_train=mel/train \
  --data.audio_val=mel/val --data.clip_seconds=1.0 --mixed.audio_batch=4 --sample.top_k=8 --train.max_steps=60 \
  --train.eval_every=60 --train.save_every=60 --train.lr=2e-3 --run.dir=runs/audio > audio.log
a0=$(first runs/audio audio_loss) a1=$(last runs/audio audio_loss)
awk -v a="$a0" -v b="$a1" 'BEGIN { exit !(b < 0.8 * a) }' || fail "audio_loss did not fall: $a0 -> $a1"
for key in val_audio_loss describe_exact describe_melody_key music_adherence music_adherence_key text_loss image_loss; do
  grep -q "\"$key\":" runs/audio/metrics.jsonl || fail "no $key in the audio run's metrics.jsonl"
done
[ -s runs/audio/codes_train.safetensors ] || fail "the training clips' codes are not kept in the run"
caption=$(sed -E 's/.*"caption":"([^"]*)".*/\1/' mel/val/captions.jsonl | head -1)
"$fm" generate music --run runs/audio --prompt "$caption" --seconds 0.5 --out played.wav > /dev/null 2>&1
[ "$(head -c 4 played.wav)" = RIFF ] || fail "fm generate music on a mixed run did not write a WAV"
expect_error "longer than this model generates" "$fm" generate music --run runs/audio --prompt "$caption" --seconds 9 --out x.wav
echo "melodies in the mixed model: audio_loss $a0 -> $a1; fm generate music plays from the same run"

#!/usr/bin/env bash
# End-to-end test of the caption kind: captioned shapes made by `fm prepare
# shapes`, a tiny captioner that must learn (validation loss falls, BLEU and
# exact match far above a model that ignores the image), resume equality,
# fm eval, `fm caption` (files, --dir, --out) and the caption example, the
# single-sequence layout and CoCa, a CLIP run's frozen image tower, and bad
# inputs (a clear line naming the file; good files still captioned).
#   usage: fm_caption.sh FM_BINARY CAPTION_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 caption=$2 root=$3 work=$4
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

"$fm" prepare shapes --size 32 --split train --n 3000 --seed 0 --out shapes/train > /dev/null
"$fm" prepare shapes --size 32 --split test --n 200 --seed 1 --out shapes/test > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' shapes/train/captions.jsonl > captions.txt
"$fm" tokenizer train --vocab-size 320 --out shapes.tok captions.txt > /dev/null
recipe=$root/experiments/caption_shapes.ini
tiny=(--model.vision_width=64 --model.vision_layers=2 --model.text_width=64 --model.text_layers=2
      --data.tokenizer=shapes.tok --data.train=shapes/train --data.val=shapes/test --train.batch_size=32
      --train.warmup_steps=20 --train.log_every=50 --train.eval_samples=100 --eval.samples=4
      --runtime.threads=1 --runtime.peak_gflops=100)

# 1. A tiny captioner learns. A model that ignores the image can still say
#    "a small red circle ..." from the grammar, but never the right colour,
#    shape, size and place together: exact match stays near 0 for it.
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=500 --train.eval_every=250 --train.save_every=250 \
  --train.lr=2e-3 --run.dir=runs/tiny > train.log
v0=$(first runs/tiny val_loss) v1=$(last runs/tiny val_loss)
awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(b < a) }' || fail "val_loss did not fall: $v0 -> $v1"
grep -q "img/s" train.log || fail "the progress line does not count images"
grep -q "reference:" runs/tiny/samples/step_500_captions.txt || fail "no caption samples at the last evaluation"
"$fm" eval runs/tiny > eval.json
colour=$(grep -o '"one_colour":[0-9.e-]*' eval.json | cut -d: -f2)
awk -v a="$colour" 'BEGIN { exit !(a > 0.5) }' || { cat eval.json; fail "colour right in $colour of one-shape captions, not above 0.5 (chance: 0.125)"; }
exact=$(grep -o '"exact_one":[0-9.e-]*' eval.json | cut -d: -f2)
for k in bleu4 cider_d rouge_l exact_one exact_two exact_one_seen exact_two_seen exact_heldout_n; do grep -q "\"$k\"" eval.json || fail "fm eval lacks $k"; done
grep -qF '"target":"exact_one_seen >= 0.95"' eval.json || { cat eval.json; fail "fm eval does not show the recipe's target"; }
echo "tiny captioner: val_loss $v0 -> $v1, colour right in $colour and whole caption in $exact of one-shape images"

# 2. Resume: 2N steps straight equal N, a stop, and N more.
short=("${tiny[@]}" --train.max_steps=12 --train.warmup_steps=4 --train.eval_every=0 --train.save_every=6)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=6 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
echo "resume: identical losses"

# 3. fm caption: files, a folder, --out; the example. Captions of the
#    same images agree between greedy and the files' JSON lines.
cp shapes/test/000001.png shapes/test/000003.png .
"$fm" caption --run runs/tiny 000001.png 000003.png > two.jsonl
[ "$(wc -l < two.jsonl)" = 2 ] || fail "fm caption did not print one line per image"
grep -q '"file":"000001.png","caption":"a ' two.jsonl || { cat two.jsonl; fail "no caption for 000001.png"; }
mkdir folder && cp shapes/test/00000[0-4].png folder/
"$fm" caption --run runs/tiny --dir folder --beam 5 --out folder.jsonl 2> /dev/null
[ "$(grep -c '"score"' folder.jsonl)" = 5 ] || fail "--dir did not caption the folder's 5 images"
"$caption" --run runs/tiny 000001.png > example.txt
grep -q "^000001.png	a " example.txt || { cat example.txt; fail "the caption example printed no caption"; }
"$fm" caption --run runs/tiny --sample true --top-k 3 --seed 4 000001.png > sampled.jsonl
echo "caption: files, folder, example, sampling"

# 4. The single-sequence layout and CoCa train, evaluate and caption.
"$fm" train "$recipe" "${short[@]}" --model.layout=single --model.text_layers=2 --train.eval_every=12 \
  --train.eval_samples=16 --run.dir=runs/single > /dev/null
"$fm" caption --run runs/single 000001.png > /dev/null
"$fm" train "$recipe" "${short[@]}" --model.coca=true --model.text_layers=3 --model.unimodal_layers=1 \
  --train.eval_every=12 --train.eval_samples=16 --run.dir=runs/coca > coca.log
grep -q '"contrastive_loss"' runs/coca/metrics.jsonl || fail "CoCa logs no contrastive loss"
echo "single layout and CoCa: trained, captioned"

# 5. A CLIP run's image tower, frozen: its shapes come from the CLIP run and
#    the caption run's copy of it does not move.
"$fm" train "$root/experiments/clip_shapes.ini" --model.vision_width=32 --model.vision_layers=1 --model.text_width=32 \
  --model.text_layers=1 --model.embed_dim=16 --data.tokenizer=shapes.tok --data.train=shapes/train \
  --data.val=shapes/test --train.batch_size=16 --train.max_steps=4 --train.warmup_steps=1 --train.eval_every=4 \
  --train.eval_samples=32 --runtime.threads=1 --runtime.peak_gflops=100 --run.dir=runs/clip > /dev/null
"$fm" train "$recipe" "${short[@]}" --model.image_encoder=runs/clip --model.freeze_image_encoder=true \
  --run.dir=runs/clip_init > clip_init.log 2>&1
grep -q '^vision_width = 32' runs/clip_init/config.ini || fail "the image tower's width is not the CLIP run's"
grep -q 'frozen' clip_init.log || fail "no word that the CLIP tower is frozen"
python3 - runs/clip/checkpoints/step_4/model.safetensors runs/clip_init/checkpoints/step_12/model.safetensors <<'PY' || fail "the frozen tower moved"
import json, struct, sys
def tensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v['data_offsets'][0]: 8 + n + v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}
clip, cap = tensors(sys.argv[1]), tensors(sys.argv[2])
shared = [k for k in clip if k.startswith(('visual.', 'patch_embed.'))]
assert shared and all(clip[k] == cap[k] for k in shared), 'differs'
PY
echo "clip image tower: loaded, frozen"

# 6. An audio captioner (the spectrogram adapter in place of the patches) on
#    captioned melodies learns (validation loss falls), reports the
#    melodies' figures, and captions audio files; images given to it are named.
"$fm" prepare melodies --split train --n 96 --seed 0 --out mel/train > /dev/null
"$fm" prepare melodies --split val --n 8 --seed 1 --out mel/val > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' mel/train/captions.jsonl > mel.txt
"$fm" tokenizer train --vocab-size 300 --out mel.tok mel.txt > /dev/null
"$fm" train "$root/experiments/caption_melodies.ini" --data.train=mel/train --data.val=mel/val --data.tokenizer=mel.tok \
  --model.vision_width=32 --model.vision_layers=1 --model.text_width=32 --model.text_layers=1 --train.batch_size=8 \
  --train.max_steps=30 --train.warmup_steps=5 --train.eval_every=15 --train.save_every=30 --train.eval_samples=8 \
  --eval.samples=2 --runtime.threads=1 --runtime.peak_gflops=100 --run.dir=runs/audio > /dev/null
v0=$(first runs/audio val_loss) v1=$(last runs/audio val_loss)
awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(b < a) }' || fail "audio captioner: val_loss did not fall: $v0 -> $v1"
grep -q '"melody_timbre"' runs/audio/metrics.jsonl || fail "the audio captioner reports no melody figures"
"$fm" caption --run runs/audio mel/val/mel_000000.wav > audio.jsonl
grep -q '"file":"mel/val/mel_000000.wav","caption":"' audio.jsonl || { cat audio.jsonl; fail "no caption of the clip"; }
"$fm" caption --run runs/audio --dir mel/val --beam 1 > audio_dir.jsonl
[ "$(wc -l < audio_dir.jsonl)" = 8 ] || fail "--dir did not caption the 8 clips"
if "$fm" caption --run runs/audio 000001.png > /dev/null 2> audio.err; then fail "an image given to an audio captioner must fail"; fi
grep -q "000001.png: it is not an audio file" audio.err || { cat audio.err; fail "the image given to the audio captioner is not named"; }
echo "audio captioner: val_loss $v0 -> $v1, clips captioned"

# 7. Bad input: a clear line naming the file; the good files are still captioned.
echo "not an image" > broken.png
head -c 100 /dev/urandom > sound.wav
if "$fm" caption --run runs/tiny 000001.png broken.png sound.wav > mixed.jsonl 2> mixed.err; then fail "skips must make the exit code 1"; fi
grep -q "broken.png" mixed.err || { cat mixed.err; fail "the unreadable image is not named"; }
grep -q "sound.wav: it is audio" mixed.err || { cat mixed.err; fail "the audio file is not named"; }
grep -q "skipped 2 of 3 files" mixed.err || { cat mixed.err; fail "no count of skipped files"; }
[ "$(wc -l < mixed.jsonl)" = 1 ] || fail "the good image was not captioned"
expect_error "--beam must be at least 1" "$fm" caption --run runs/tiny --beam 0 000001.png
mkdir empty && expect_error "holds no images" "$fm" caption --run runs/tiny --dir empty
expect_error "not a caption or mixed run" "$fm" caption --run runs/clip 000001.png
expect_error "decode.beam" "$fm" train "$recipe" "${short[@]}" --decode.beam=0 --run.dir=runs/badbeam
echo "1 passed, 0 failed"

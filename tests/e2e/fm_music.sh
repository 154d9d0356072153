#!/usr/bin/env bash
# End-to-end test of the music kind: captioned melodies made by `fm prepare
# melodies`, a tiny codec, a tiny music model over its tokens that must learn
# (validation loss falls), resume equality, the analyser's figures in fm
# eval, `fm generate music` (--prompt with WAV, FLAC and MP3, --prompts) and
# bad inputs (one clear line naming the option or file).
#   usage: fm_music.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

"$fm" prepare melodies --split train --n 64 --seed 0 --out mel/train > /dev/null
"$fm" prepare melodies --split val --n 8 --seed 1 --out mel/val > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' mel/train/captions.jsonl > mel.txt
"$fm" tokenizer train --vocab-size 300 --out mel.tok mel.txt > /dev/null
common=(--runtime.threads=1 --runtime.peak_gflops=100 --train.log_every=10)
"$fm" train "$root/experiments/codec_melodies.ini" "${common[@]}" --data.train=mel/train --data.val=mel/val \
  --model.channels=8 --model.dim=16 --model.n_codebooks=2 --model.codebook_size=32 --train.batch_size=4 \
  --train.max_steps=20 --train.warmup_steps=2 --train.eval_every=0 --train.save_every=20 --run.dir=runs/codec > /dev/null

tiny=("${common[@]}" --model.codec=runs/codec --data.train=mel/train --data.val=mel/val --data.tokenizer=mel.tok --model.width=32
      --model.layers=2 --model.heads=2 --model.text_width=32 --model.text_layers=1 --model.text_heads=2
      --train.batch_size=8 --train.warmup_steps=5 --eval.samples=2 --sample.top_k=8)
recipe=$root/experiments/music_melodies.ini

# 1. A tiny model learns the codes (validation loss falls); eval generates
#    and judges clips; audio samples reach the run's samples folder.
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=60 --train.eval_every=30 --train.save_every=30 \
  --train.lr=3e-3 --run.dir=runs/tiny > train.log
v0=$(first runs/tiny val_loss) v1=$(last runs/tiny val_loss)
awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(b < a) }' || fail "val_loss did not fall: $v0 -> $v1"
ls runs/tiny/samples/step_60_sample_0.wav > /dev/null || fail "no audio sample at the last evaluation"
"$fm" eval runs/tiny > eval.json
for k in val_loss adherence adherence_key adherence_tempo adherence_timbre adherence_register; do
  grep -q "\"$k\"" eval.json || { cat eval.json; fail "fm eval lacks $k"; }
done
echo "tiny music model: val_loss $v0 -> $v1"

# 2. Resume: 2N steps straight equal N, a stop, and N more.
short=("${tiny[@]}" --train.max_steps=8 --train.eval_every=0 --train.save_every=4)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=4 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
echo "resume: identical losses"

# 3. fm generate music: one prompt into each format; a prompts file.
prompt="a fast melody in G major played on a square wave, high register"
for ext in wav flac mp3; do
  "$fm" generate music --run runs/tiny --prompt "$prompt" --seconds 1 --seed 3 --out "x.$ext" > /dev/null 2>&1 \
    || fail "generate music --out x.$ext failed"
  [ -s "x.$ext" ] || fail "x.$ext was not written"
done
[ "$(head -c 4 x.wav)" = RIFF ] || fail "x.wav is not a WAV file"
bytes=$(stat -c %s x.wav)
[ "$bytes" -ge 32000 ] && [ "$bytes" -le 32100 ] || fail "x.wav holds $bytes bytes, not 1 s of 16-bit 16 kHz audio"
"$fm" prepare melodies --prompts --k 1 --out prompts.jsonl > /dev/null
head -n 3 prompts.jsonl > three.jsonl
mkdir gen && "$fm" generate music --run runs/tiny --prompts three.jsonl --seconds 0.5 --out gen > /dev/null 2>&1
[ "$(ls gen/*.wav | wc -l)" = 3 ] || fail "--prompts did not write one clip per line"
echo "generate music: wav, flac, mp3 and a prompts file"

# 4. Bad inputs: one line naming the option or file, nothing written.
expect_error "--seconds must be > 0" "$fm" generate music --run runs/tiny --prompt "$prompt" --seconds 0 --out y.wav
expect_error "is longer than this model generates" "$fm" generate music --run runs/tiny --prompt "$prompt" --seconds 10000 --out y.wav
expect_error "must end in .wav, .flac or .mp3" "$fm" generate music --run runs/tiny --prompt "$prompt" --out y.ogg
expect_error "not a music run" "$fm" generate music --run runs/codec --prompt "$prompt" --out y.wav
expect_error "is not a run directory" "$fm" generate music --run nowhere --prompt "$prompt" --out y.wav
expect_error "not a codec run" "$fm" train "$recipe" "${tiny[@]}" --model.codec=runs/tiny --run.dir=runs/bad
[ ! -e y.wav ] || fail "a failed generation wrote y.wav"
echo "bad inputs: clear errors"

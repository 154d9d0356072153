#!/usr/bin/env bash
# End-to-end test of the codec kind: captioned melodies made by `fm prepare
# melodies`, a tiny codec trained for a few steps (its evaluation reports
# mel_distance, si_snr and codebook usage; reconstructions land in samples/
# as WAV files), resume equality (the codebooks' k-means starts and restarts
# included), `fm codec encode` (codes [K, F] at 50 frames/s) and `fm codec
# decode` (WAV and FLAC of the input's length), and bad inputs (one clear line).
#   usage: fm_codec.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

"$fm" prepare melodies --n 24 --seed 0 --out mel/train > /dev/null
"$fm" prepare melodies --split val --n 4 --seed 0 --out mel/val > /dev/null
recipe=$root/experiments/codec_melodies.ini
# The tiny config: widths 4..64, 4 codebooks of 64 codes, 0.4 s crops, 1 s evaluation clips.
tiny=(--model.channels=4 --model.dim=16 --model.n_codebooks=4 --model.codebook_size=64
      --data.train=mel/train --data.val=mel/val --data.workers=1 --data.segment_seconds=0.4 --data.eval_seconds=1
      --train.batch_size=4 --train.warmup_steps=4 --train.log_every=10 --train.eval_samples=4 --eval.samples=2
      --runtime.threads=1 --runtime.peak_gflops=100)

# 1. A few training steps: the figures are reported, the samples written.
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=20 --train.eval_every=10 --train.save_every=20 \
  --run.dir=runs/tiny > train.log
for k in mel_distance si_snr val_l1 val_mel codebook_usage codebook_perplexity; do
  grep -q "\"$k\":" runs/tiny/metrics.jsonl || fail "metrics.jsonl lacks $k"
done
m0=$(first runs/tiny mel_distance) m1=$(last runs/tiny mel_distance)
grep -q "clips/s" train.log || fail "the progress line does not count clips"
for f in step_20_clip_0.wav step_20_clip_1_original.wav; do
  [ "$(head -c 4 "runs/tiny/samples/$f")" = RIFF ] || fail "samples/$f is not a WAV file"
done
echo "tiny codec: mel_distance $m0 -> $m1, si_snr $(last runs/tiny si_snr) dB"

# 2. Resume: 2N steps straight equal N, a stop, and N more.
short=("${tiny[@]}" --train.max_steps=6 --train.warmup_steps=2 --train.eval_every=0 --train.save_every=3)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=3 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
echo "resume: identical losses"

# 3. encode: a 4 s clip gives 4 codebooks x 200 frames; decode: back to 64000 samples.
clip=mel/val/mel_000000.wav
"$fm" codec encode --run runs/tiny --in "$clip" --out codes.safetensors 2> encode.log
grep -q "4 x 200 codes" encode.log || { cat encode.log; fail "encode did not report 4 x 200 codes"; }
head -c 2000 codes.safetensors | grep -q '"codes":{"dtype":"I32","shape":\[4,200\]' || fail "codes are not [4, 200] i32"
head -c 2000 codes.safetensors | grep -q '"samples":"64000"' || fail "the codes' metadata lacks samples = 64000"
"$fm" codec decode --run runs/tiny --in codes.safetensors --out y.wav 2> /dev/null
# A 16-bit mono WAV of 64000 samples: the data chunk holds 128000 bytes.
bytes=$(od -An -tu4 -j40 -N4 y.wav | tr -d ' ')
[ "$(head -c 4 y.wav)" = RIFF ] || fail "y.wav is not a WAV file"
[ "$bytes" = 128000 ] || fail "y.wav holds $bytes data bytes, not 128000 (64000 samples)"
"$fm" codec decode --run runs/tiny --in codes.safetensors --out y.flac 2> /dev/null
[ "$(head -c 4 y.flac)" = fLaC ] || fail "y.flac is not a FLAC file"
# Any length: 1000 samples (not a multiple of the hop) come back as 1000.
head -c 2044 "$clip" > short.wav
printf '\xd0\x07\x00\x00' | dd of=short.wav bs=1 seek=40 conv=notrunc 2> /dev/null  # data size 2000 bytes
printf '\xf4\x07\x00\x00' | dd of=short.wav bs=1 seek=4 conv=notrunc 2> /dev/null   # RIFF size 2036
"$fm" codec encode --run runs/tiny --in short.wav --out short.safetensors 2> /dev/null
"$fm" codec decode --run runs/tiny --in short.safetensors --out short_y.wav 2> /dev/null
[ "$(od -An -tu4 -j40 -N4 short_y.wav | tr -d ' ')" = 2000 ] || fail "a 1000-sample clip did not decode to 1000 samples"
echo "encode/decode: 4 x 200 codes, 64000 samples back (WAV and FLAC); 1000 samples back as 1000"

# 4. fm check melodies: the analyser hears the data set's own clips as captioned,
# and rejects them under their captions shifted by one; the codec's evaluation
# with eval.checker = melodies reports codec_adherence (its round trips judged).
"$fm" check melodies --captions mel/train/captions.jsonl > check.txt
tail -n 1 check.txt | grep -q "24 clips: all 100.0%" || { tail -n 1 check.txt; fail "the data set's clips do not all match their captions"; }
[ "$(grep -c '"all":true' check.txt)" = 24 ] || fail "check melodies did not print 24 matching JSON lines"
paste -d '\n' <(grep -o '"file":"[^"]*"' mel/train/captions.jsonl) \
  <(grep -o '"caption":"[^"]*"' mel/train/captions.jsonl | awk 'NR == 1 { f = $0; next } { print } END { print f }') |
  paste -d ',' - - | sed 's/^/{/; s/$/}/' > mel/train/shifted.jsonl
"$fm" check melodies --captions mel/train/shifted.jsonl > shifted.txt
wrong=$(grep -c '"all":true' shifted.txt || true)
[ "$wrong" -le 1 ] || fail "$wrong of 24 clips matched another clip's caption"
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=4 --train.warmup_steps=2 --train.eval_every=4 --eval.checker=melodies --run.dir=runs/checked > /dev/null
grep -q '"codec_adherence_key":' runs/checked/metrics.jsonl || fail "metrics.jsonl lacks codec_adherence_key"
expect_error "eval.checker" "$fm" train "$recipe" "${short[@]}" --eval.checker=shapes --run.dir=runs/bad0
echo "check melodies: 24 of 24 data set clips match, $wrong of 24 under shifted captions; codec_adherence logged"

# 5. Bad inputs: one clear line.
"$fm" train "$recipe" "${short[@]}" --model.n_codebooks=2 --train.max_steps=3 --run.dir=runs/two > /dev/null
echo '{"file":"missing.wav","caption":"a slow melody in C major played on a sine wave, low register"}' > miss.jsonl
expect_error "missing.wav" "$fm" check melodies --captions miss.jsonl
echo '{"file":"'"$clip"'","caption":"a slow melody in C minor played on a sine wave, low register"}' > badcap.jsonl
expect_error "C minor" "$fm" check melodies --captions badcap.jsonl --dir .
expect_error "n_codebooks 4, but the model of runs/two has 2" "$fm" codec decode --run runs/two --in codes.safetensors --out z.wav
expect_error "is not a directory" "$fm" codec encode --run runs/none --in "$clip" --out z.safetensors
expect_error "not a run directory" "$fm" codec encode --run mel --in "$clip" --out z.safetensors
expect_error "--in is required" "$fm" codec encode --run runs/tiny --out z.safetensors
expect_error "expected encode or decode" "$fm" codec transcode --run runs/tiny
expect_error "mel_000000.wav: header length" "$fm" codec decode --run runs/tiny --in "$clip" --out z.wav
expect_error "not a codes file" "$fm" codec decode --run runs/tiny --in runs/tiny/checkpoints/step_20/model.safetensors --out z.wav
expect_error "z.txt" "$fm" codec encode --run runs/tiny --in z.txt --out z.safetensors
expect_error "not an integer" "$fm" train "$recipe" "${short[@]}" --model.ratios=2,x --run.dir=runs/bad1
expect_error "loss.mel_weight" "$fm" train "$recipe" "${short[@]}" --loss.mel_weight=-1 --run.dir=runs/bad2
echo "1 passed, 0 failed"

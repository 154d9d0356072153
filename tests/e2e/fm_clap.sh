#!/usr/bin/env bash
# End-to-end test of the clap kind: captioned melodies made by `fm prepare
# melodies` and a BPE over their captions, a tiny CLAP trained from the
# recipe for a few steps (the loss falls), fm eval with retrieval and the
# zero-shot figures per attribute, resume equality, and bad inputs (one
# clear line).
#   usage: fm_clap.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

"$fm" prepare melodies --split train --n 64 --seed 0 --out mel/train > /dev/null
"$fm" prepare melodies --split val --n 16 --seed 1 --out mel/val > /dev/null
sed -E 's/.*"caption":"([^"]*)".*/\1/' mel/train/captions.jsonl > captions.txt
"$fm" tokenizer train --vocab-size 320 --out mel.tok captions.txt > /dev/null
recipe=$root/experiments/clap_melodies.ini
tiny=(--data.train=mel/train --data.val=mel/val --data.zeroshot=mel/val --data.tokenizer=mel.tok --data.workers=1
      --model.clip_seconds=2.0 --model.audio_width=32 --model.audio_layers=1 --model.audio_heads=2 --model.text_width=32
      --model.text_layers=1 --model.text_heads=2 --model.embed_dim=32 --train.batch_size=16 --train.warmup_steps=2
      --train.log_every=5 --runtime.threads=1 --runtime.peak_gflops=100)

# 1. A few steps: the loss falls; fm eval reports retrieval both ways and
#    the zero-shot accuracy of each attribute beside its chance.
"$fm" train "$recipe" "${tiny[@]}" --train.max_steps=30 --train.eval_every=30 --train.save_every=30 \
  --train.lr=2e-3 --run.dir=runs/tiny > train.log
l0=$(first runs/tiny train_loss) l1=$(last runs/tiny train_loss)
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < a) }' || fail "train_loss did not fall: $l0 -> $l1"
grep -q "clip/s" train.log || fail "the progress line does not count clips"
"$fm" eval runs/tiny > eval.json
for k in a2t_r1 a2t_r5 a2t_r10 t2a_r1 t2a_r5 t2a_r10 zeroshot_key zeroshot_tempo zeroshot_timbre zeroshot_register \
         zeroshot_mean zeroshot_key_chance zeroshot_register_chance; do
  grep -q "\"$k\"" eval.json || { cat eval.json; fail "fm eval lacks $k"; }
done
chance=$(grep -o '"zeroshot_key_chance":[0-9.e-]*' eval.json | cut -d: -f2)
awk -v c="$chance" 'BEGIN { exit !(c > 0.111 && c < 0.112) }' || fail "zeroshot_key_chance is $chance, not 1/9"
echo "tiny clap: train_loss $l0 -> $l1; $(grep -o '"zeroshot_[a-z]*":[0-9.e-]*' eval.json | grep -v chance | tr '\n' ' ')"

# 2. Resume: 2N steps straight equal N, a stop, and N more.
short=("${tiny[@]}" --train.max_steps=8 --train.eval_every=0 --train.save_every=4)
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/straight > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --run.stop_after=4 > /dev/null
"$fm" train "$recipe" "${short[@]}" --run.dir=runs/resumed --resume > /dev/null
diff <(losses runs/straight) <(losses runs/resumed) || fail "resumed losses differ from the straight run"
echo "resume: identical losses"

# 3. Bad inputs: one clear line.
expect_error "model.loss" "$fm" train "$recipe" "${tiny[@]}" --model.loss=hinge --run.dir=runs/bad
expect_error "pool must be 'cls' or 'mean'" "$fm" train "$recipe" "${tiny[@]}" --model.pool=max --run.dir=runs/bad2
expect_error "shared_core needs equal" "$fm" train "$recipe" "${tiny[@]}" --model.shared_core=true \
  --model.text_layers=2 --run.dir=runs/bad3
echo "bad inputs: clear errors"

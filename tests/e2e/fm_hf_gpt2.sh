#!/usr/bin/env bash
# End-to-end test of fm export and fm import hf-gpt2 on a tiny BPE run of the
# fortunes corpus: a few training steps with EMA weights; the export as libfm
# (every tensor documented) and as Hugging Face GPT-2; fm import of that back
# into a run, whose own export is the same files byte for byte and whose
# validation loss is the original run's. Where python3 has transformers, the
# export's validation loss in transformers is fm eval's too.
#   usage: fm_hf_gpt2.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"

FM=$fm "$root/tools/prepare-fortunes" data/fortunes >/dev/null
d=data/fortunes
data=(--data.train="$d/bpe4k_train_*.bin" --data.val="$d/bpe4k_val_*.bin" --data.tokenizer=$d/bpe4k.tok)
eval_keys=(--train.eval_steps=4 --train.batch_size=32 --runtime.threads=1)
"$fm" train "$root/experiments/gpt_char_tiny.ini" "${data[@]}" --model.vocab_size=0 --model.activation=gelu_tanh \
  --run.dir=runs/a --train.max_steps=20 --train.warmup_steps=2 --train.eval_every=0 --train.ema_decay=0.9 \
  "${eval_keys[@]}" > train.log

# 1. Exports: libfm (names, shapes, dtypes, descriptions, config keys) and hf.
"$fm" export runs/a --out lib | grep -qF "(EMA weights, 40 tensors)" || fail "fm export did not export the EMA weights"
"$fm" export runs/a --out hf --format hf > /dev/null
for f in lib/model.safetensors lib/config.json hf/model.safetensors hf/config.json hf/vocab.json hf/merges.txt; do
  [ -s "$f" ] || fail "fm export wrote no $f"
done
grep -qF '"weights": "ema"' lib/config.json || fail "lib/config.json does not say the weights are the EMA's"
grep -qF '"model.activation": "gelu_tanh"' lib/config.json || fail "lib/config.json lacks the run's config keys"
grep -qF '"description": "block 2, self-attention, q | k | v projection' lib/config.json || fail "tensors undescribed"
grep -qF '"activation_function": "gelu_new"' hf/config.json || fail "hf/config.json lacks gelu_new"
expect_error "is not a run directory" "$fm" export runs/none --out x
expect_error "--format must be libfm or hf" "$fm" export runs/a --out x --format onnx

# 2. Import and export again: the same files; the same validation loss.
"$fm" import hf-gpt2 --from hf --out runs/b > /dev/null
"$fm" export runs/b --out hf2 --format hf > /dev/null
for f in model.safetensors config.json vocab.json merges.txt tokenizer_config.json; do
  cmp -s "hf/$f" "hf2/$f" || fail "hf/$f changed through fm import and fm export"
done
expect_error "already holds a run" "$fm" import hf-gpt2 --from hf --out runs/b
val_a=$("$fm" eval runs/a | grep -o '"val_loss":[0-9.e-]*' | cut -d: -f2)
val_b=$("$fm" eval runs/b "${data[@]}" "${eval_keys[@]}" | grep -o '"val_loss":[0-9.e-]*' | cut -d: -f2)
[ "$val_a" = "$val_b" ] || fail "the imported run's val loss $val_b is not the original's $val_a"
text=$("$fm" generate text --run runs/b --prompt "The " --max-new-tokens 8 --temperature 0)
[ "${text:0:4}" = "The " ] || fail "fm generate on the imported run printed '$text'"
echo "export, import, export: same files; val loss $val_a both"

# 3. transformers reads the export: its validation loss on the same batches.
if python3 -c "import transformers, torch" 2>/dev/null; then
  val_hf=$(python3 -B "$root/tests/fixtures/hf_val_loss.py" hf "$d/bpe4k_val_000.bin" 32 64 4 2>/dev/null | tail -1)
  awk -v a="$val_a" -v b="$val_hf" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }' ||
    fail "transformers' val loss $val_hf differs from fm eval's $val_a"
  echo "transformers: val loss $val_hf (fm eval: $val_a)"
fi
echo "OK"

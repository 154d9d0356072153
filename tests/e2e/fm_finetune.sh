#!/usr/bin/env bash
# End-to-end test of fm finetune: a tiny byte-level GPT on the fortunes
# corpus, adapted to another Debian text (the GPL) with LoRA and with bias-only
# training. Checks that the adapted model learned the new text (its
# validation loss there falls well below the base's), that a LoRA checkpoint
# holds the adapters only, that generate/eval load base + adapters, that a
# fine-tuning run resumes exactly, and that bad plans fail cleanly.
#   usage: fm_finetune.sh FM_BINARY REPO_ROOT SCRATCH_DIR
set -euo pipefail
fm=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
source "$root/tests/e2e/lib.sh"
val_loss() { "$fm" eval "$@" | grep -o '"val_loss":[0-9.]*' | cut -d: -f2; }

FM=$fm "$root/tools/prepare-fortunes" data/fortunes >/dev/null
"$fm" prepare text --tokenizer data/fortunes/bytes.tok --out data/gpl --name bytes --val-fraction 0.1 \
  /usr/share/common-licenses/GPL-3 >/dev/null
recipe=$root/experiments/gpt_char_tiny.ini
gpl=(--data.train=data/gpl/bytes_train_000.bin --data.val=data/gpl/bytes_val_000.bin --train.eval_steps=8)
"$fm" train "$recipe" --run.dir=runs/base --train.max_steps=200 --train.save_every=0 --train.eval_every=0 > /dev/null
base_gpl=$(val_loss runs/base "${gpl[@]}")

# 1. LoRA learns the new text; its checkpoint is the adapters alone.
ft=(--train.max_steps=100 --train.warmup_steps=10 --train.eval_every=0 --train.save_every=50 --train.lr=1e-2
    --train.weight_decay=0 --finetune.method=lora --finetune.lora_rank=4 "${gpl[@]}")
"$fm" finetune "$recipe" --from runs/base --run.dir=runs/lora "${ft[@]}" > lora.log
grep -q "fine-tuning runs/base | lora on 12 layers, rank 4" lora.log || { cat lora.log; fail "no fine-tuning line"; }
lora_gpl=$(val_loss runs/lora)
echo "GPL val loss: base $base_gpl, LoRA $lora_gpl"
awk -v a="$lora_gpl" -v b="$base_gpl" 'BEGIN { exit !(a < b - 0.1) }' || fail "LoRA did not learn the new text ($base_gpl -> $lora_gpl)"
ckpt=runs/lora/checkpoints/step_100/model.safetensors
full=$(stat -c %s runs/base/checkpoints/step_200/model.safetensors) small=$(stat -c %s "$ckpt")
[ "$small" -lt $((full / 5)) ] || fail "the LoRA checkpoint ($small bytes) is not much smaller than the model ($full)"
# The safetensors header's tensor names (python3 comes with tools/setup's python3-pip).
names=$(python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print("\n".join(k for k in json.loads(f.read(n)) if k != "__metadata__"))' "$ckpt")
[ -n "$names" ] && ! echo "$names" | grep -qv 'lora_[AB]$' || fail "the LoRA checkpoint holds more than adapters: $names"
# generate and eval load base + adapters.
out=$("$fm" generate text --run runs/lora --prompt "the " --max-new-tokens 40 --seed 3)
[ ${#out} -gt 10 ] || fail "generate on a LoRA run printed nothing"

# 2. Bias-only training moves the loss too, less.
"$fm" finetune "$recipe" --from runs/base --run.dir=runs/bitfit "${ft[@]}" --finetune.method=bitfit --train.lr=1e-2 > /dev/null
bitfit_gpl=$(val_loss runs/bitfit)
echo "GPL val loss: bitfit $bitfit_gpl"
awk -v a="$bitfit_gpl" -v b="$base_gpl" 'BEGIN { exit !(a < b) }' || fail "bias-only training did not lower the loss"

# 3. A fine-tuning run resumes exactly.
"$fm" finetune "$recipe" --from runs/base --run.dir=runs/resumed "${ft[@]}" --run.stop_after=50 > /dev/null
"$fm" finetune "$recipe" --from runs/base --run.dir=runs/resumed "${ft[@]}" --resume > /dev/null
diff <(losses runs/lora) <(losses runs/resumed) || fail "the resumed fine-tuning run's losses differ"
cmp runs/lora/checkpoints/step_100/model.safetensors runs/resumed/checkpoints/step_100/model.safetensors ||
  fail "the resumed run's adapters differ"

# 4. The evaluation harness: one suite on the base and the LoRA run, side by side.
printf '[suite]\nname = texts\n[fortunes]\ndata.val = data/fortunes/bytes_val_000.bin\ntrain.eval_steps = 4\n' > suite.ini
printf '[gpl]\ndata.val = data/gpl/bytes_val_000.bin\ntrain.eval_steps = 4\nreport = val_loss, val_ppl\n' >> suite.ini
"$fm" eval runs/base --suite suite.ini > /dev/null
"$fm" eval runs/lora --suite suite.ini > /dev/null
[ -f runs/lora/eval/texts.json ] && [ -f runs/lora/eval/texts.md ] || fail "fm eval --suite wrote no results"
"$fm" eval --compare runs/base runs/lora > compare.md
grep "| gpl | val_loss |" compare.md | awk -F'|' '{ exit !($6 < -0.1) }' || { cat compare.md; fail "the comparison does not show the LoRA gain"; }
grep -q "| fortunes | val_ppl |" compare.md || { cat compare.md; fail "no perplexity in the comparison"; }

# 5. Bad plans fail cleanly, before anything is written.
expect_error "say which weights to start from" "$fm" finetune "$recipe" --run.dir=runs/x
expect_error "was made for model.d_model = 96" "$fm" finetune "$recipe" --from runs/base --run.dir=runs/y --model.d_model=64
expect_error "the model's Linear layers are:" "$fm" finetune "$recipe" --from runs/base --run.dir=runs/z \
  --finetune.method=lora --finetune.lora_targets=c_attn
[ ! -e runs/x ] && [ ! -e runs/y ] && [ ! -e runs/z ] || fail "a refused fine-tuning wrote a run directory"
echo "1 passed, 0 failed"

#!/usr/bin/env python3
"""PyTorch peer of `fm bench train RECIPE --steps N --runtime.threads=T` for
CLIP recipes: times forward + backward + AdamW steps of the same CLIP as
train_clip.py (tasks/image/clip_model.cpp) on synthetic data of the recipe's
shapes, as ClipTask::bench_step does: images ~ N(0, 1) [B, C, S, S], caption
ids uniform over the vocabulary [B, L], end-of-text at L - 1. One warm-up
step, then the median of N timed steps (as train::bench_train; no gradient
clipping, no LR schedule: neither is in libfm's bench step either).

usage: python3 bench/peers/clip_step.py [RECIPE.ini] [--key=value ...] [--threads T] [--steps N]
       (RECIPE defaults to experiments/clip_fmnist.ini)
Prints one JSON line: samples_per_s, step_s, params, gflops, threads
(the fields of `fm bench train`'s line; gflops with ClipTask::flops_per_sample).
"""
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_clip import CLIP, VOCAB, check_supported, read_config  # noqa: E402


def flops_per_sample(model, c):
    # tasks/image/clip_task.cpp ClipTask::flops_per_sample
    count = lambda *mods: sum(p.numel() for m in mods for p in (m.parameters() if isinstance(m, torch.nn.Module) else [m]))
    S, P = int(c["model.image_size"]), int(c["model.patch_size"])
    n_img = (S // P) ** 2 + (1 if c["model.pool"] == "cls" else 0)
    patch = [model.patch_proj, model.patch_pos] + ([model.cls] if model.cls is not None else [])
    vision = count(model.visual, model.visual_proj, *patch)
    text = count(model.text, model.text_proj)
    L = int(c["model.context_length"])
    return 6.0 * (vision * n_img + text * L) + 12.0 * (
        int(c["model.vision_layers"]) * int(c["model.vision_width"]) * n_img * n_img +
        int(c["model.text_layers"]) * int(c["model.text_width"]) * L * L)


def main():
    argv = sys.argv[1:]
    threads, steps, rest, i = 1, 10, [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("--threads", "--steps"):
            v, i = int(argv[i + 1]), i + 2
            threads, steps = (v, steps) if a == "--threads" else (threads, v)
            continue
        if a.startswith("--threads="):
            threads = int(a.split("=", 1)[1])
        elif a.startswith("--steps="):
            steps = int(a.split("=", 1)[1])
        elif a.startswith("--runtime.threads="):  # fm's spelling
            threads = int(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    if rest and rest[0] in ("-h", "--help"):
        sys.exit(__doc__)
    recipe = rest[0] if rest and not rest[0].startswith("--") else "experiments/clip_fmnist.ini"
    overrides = [a for a in rest if a.startswith("--")]
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as gpt_step.py: the peer in its fastest setting
    c = read_config(recipe, overrides)
    check_supported(c)
    torch.manual_seed(int(c["train.seed"]))
    model = CLIP(c)
    model.train()
    opt = torch.optim.AdamW(model.param_groups(float(c["train.weight_decay"])), lr=float(c["train.lr"]),
                            betas=(float(c["train.beta1"]), float(c["train.beta2"])), eps=1e-8)
    B, C, S, L = (int(c[k]) for k in ("train.batch_size", "model.channels", "model.image_size", "model.context_length"))
    images = torch.randn(B, C, S, S)
    ids = torch.randint(0, VOCAB, (B, L))
    eot = torch.full((B,), L - 1, dtype=torch.int64)

    def step():
        opt.zero_grad(set_to_none=False)
        loss, _ = model.loss(images, ids, eot)
        loss.backward()
        opt.step()
        loss.item()

    step()  # warm-up, as train::bench_train
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        print(f"step {k + 1}/{steps}: {times[-1]:.3f} s", file=sys.stderr)
    step_s = sorted(times)[len(times) // 2]
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "peer": "pytorch " + torch.__version__,
        "kind": "clip",
        "samples_per_s": B / step_s,
        "step_s": step_s,
        "params": params,
        "gflops": B / step_s * flops_per_sample(model, c) / 1e9,
        "threads": threads,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": "cpu",
        "precision": "f32",
    }))


if __name__ == "__main__":
    main()

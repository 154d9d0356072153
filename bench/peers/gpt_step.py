#!/usr/bin/env python3
"""PyTorch peer of bench_gpt: one forward + backward + AdamW step of a GPT
with the same shape as libfm's benchmark, on the CPU or a GPU (bf16 autocast,
fused AdamW, optionally torch.compile; attention is F.scaled_dot_product_attention,
which takes the flash kernel on a GPU).

usage: python3 bench/peers/gpt_step.py [--threads N] [--steps N] [--layers 6]
       [--d-model 384] [--heads 6] [--seq 256] [--batch 8] [--vocab 65]
       [--device cpu|cuda] [--precision f32|bf16] [--compile] [--peak-tflops X]
Prints one JSON line: tokens_per_s, step_s, gflops, mfu, peak_mem_mb, threads, params.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.norm2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, block, layers, d, h):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, ids, targets):
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for b in self.blocks:
            x = b(x)
        logits = self.norm(x) @ self.wte.weight.T  # tied embeddings
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    # Without flush-to-zero PyTorch's CPU backward slows 5x once the tied
    # embedding's gradients turn denormal (vocab 4096, from the 4th step on):
    # the peer runs in its fastest setting.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    gpu = dev.type == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    model = GPT(a.vocab, a.seq, a.layers, a.d_model, a.heads).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, **({"fused": True} if gpu else {}))
    fwd = torch.compile(model) if a.compile else model
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), device=dev)
    targets = torch.randint(0, a.vocab, (a.batch, a.seq), device=dev)
    amp = a.precision == "bf16"

    def step():
        if amp:
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = fwd(ids, targets)
        else:
            loss = fwd(ids, targets)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        loss.item()  # waits for the device

    for _ in range(2):  # warm-up
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    params = sum(p.numel() for p in model.parameters())
    # The same count as bench_gpt: 6 per parameter per token plus attention's 12 L T d.
    flops = a.batch * a.seq * (6 * params + 12 * a.layers * a.seq * a.d_model)
    peak = torch.cuda.max_memory_allocated() / 2**20 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "peer": "pytorch " + torch.__version__ + (" compiled" if a.compile else ""),
        "tokens_per_s": a.batch * a.seq / step_s,
        "step_s": step_s,
        "gflops": flops / step_s / 1e9,
        "mfu": flops / step_s / (a.peak_tflops * 1e12) if a.peak_tflops > 0 else 0.0,
        "peak_mem_mb": peak,
        "threads": a.threads,
        "params": params,
        "device": a.device,
        "precision": a.precision,
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch peer of `fm train` for text recipes: trains the same GPT (pre-norm
blocks, exact GELU, tied embeddings, GPT-2 init) with the same optimizer
(AdamW, no decay on norms/biases/embeddings), schedule (linear warmup, cosine
to min_lr), clipping and evaluation (the first eval_steps sequential B x T
blocks of the val shards) on the same llm.c token shards. Batches are drawn
with torch's own generator, so curves agree statistically, not bit for bit.

usage: python3 bench/peers/train_gpt.py RECIPE.ini [--key=value ...] [--threads N]
Writes one JSON line per evaluation: {"step", "val_loss", "train_loss", "elapsed_s"}.
"""
import configparser
import glob
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_config(path, overrides):
    cp = configparser.ConfigParser(inline_comment_prefixes=("#",))
    cp.read(path)
    cfg = {f"{s}.{k}": v for s in cp.sections() for k, v in cp[s].items()}
    for o in overrides:
        k, v = o[2:].split("=", 1)
        cfg[k] = v
    return cfg


def load_shards(pattern):
    arrays = []
    for p in sorted(glob.glob(pattern)):
        header = np.fromfile(p, dtype=np.int32, count=256)
        assert header[0] == 20240520, p
        dtype = np.uint16 if header[1] == 1 else np.uint32
        arrays.append(np.memmap(p, dtype=dtype, mode="r", offset=1024, shape=(int(header[2]),)))
    return np.concatenate(arrays).astype(np.int64)


class Block(nn.Module):
    def __init__(self, d, h, p):
        super().__init__()
        self.h, self.p = h, p
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.out(F.gelu(self.fc(self.norm2(x)))))


class GPT(nn.Module):
    def __init__(self, vocab, block, layers, d, h, p):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, h, p) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        for name, w in self.named_parameters():
            if w.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(w, 0.0, std)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(w)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.norm(x) @ self.wte.weight.T


def lr_at(step, c):
    lr, min_lr, warm, total = float(c["train.lr"]), float(c["train.min_lr"]), int(c["train.warmup_steps"]), int(c["train.max_steps"])
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--threads")]
    threads = [int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--threads=")]
    torch.set_num_threads(threads[0] if threads else 1)
    c = read_config(args[0], args[1:])
    torch.manual_seed(int(c["train.seed"]))
    train, val = load_shards(c["data.train"]), load_shards(c["data.val"])
    V = int(c["model.vocab_size"]) if int(c["model.vocab_size"]) > 0 else int(max(train.max(), val.max()) + 1)
    T, B = int(c["model.block_size"]), int(c["train.batch_size"])
    model = GPT(V, T, int(c["model.n_layer"]), int(c["model.d_model"]), int(c["model.n_head"]), float(c["model.dropout"]))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith(("wte", "wpe"))]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith(("wte", "wpe")))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(c["train.weight_decay"])},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=float(c["train.lr"]), betas=(0.9, float(c.get("train.beta2", 0.99))))
    train_t, val_t = torch.from_numpy(train), torch.from_numpy(val)

    def evaluate():
        model.eval()
        with torch.no_grad():
            losses = []
            for i in range(int(c["train.eval_steps"])):
                start = (i * B * T) % (len(val_t) - B * T - 1)
                x = val_t[start:start + B * T].view(B, T)
                y = val_t[start + 1:start + B * T + 1].view(B, T)
                losses.append(F.cross_entropy(model(x).view(-1, V), y.reshape(-1)).item())
        model.train()
        return sum(losses) / len(losses)

    t0 = time.time()
    max_steps, every = int(c["train.max_steps"]), int(c["train.eval_every"])
    for step in range(max_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c)
        idx = torch.randint(0, len(train_t) - T - 1, (B,))
        x = torch.stack([train_t[i:i + T] for i in idx])
        y = torch.stack([train_t[i + 1:i + T + 1] for i in idx])
        loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(c["train.grad_clip"]))
        opt.step()
        if (step + 1) % every == 0 or step + 1 == max_steps:
            print(json.dumps({"step": step + 1, "val_loss": evaluate(), "train_loss": loss.item(),
                              "elapsed_s": time.time() - t0}), flush=True)


if __name__ == "__main__":
    main()

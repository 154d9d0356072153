#!/usr/bin/env python3
"""PyTorch peer of `fm train` for the diffusion kind (text-to-image,
experiments/t2i_shapes.ini): trains the same DiT and caption encoder
(tasks/src/dit_model.cpp, tasks/src/text2image_model.cpp) with the same
flow-matching objective, optimizer, schedule, EMA and validation loss
(tasks/image/diffusion_task.cpp) on the captioned-shapes folders.

Same as libfm:
- caption encoder: token + learned position embeddings, causal pre-norm
  blocks (LayerNorm eps 1e-5, exact GELU, 4x MLP, biases), final LayerNorm;
  tokens = every position's features, pooled = the features at the
  end-of-text position, key mask = positions <= end-of-text. Init GPT-2
  (nn::init_gpt2: N(0, 0.02), residual projections 0.02/sqrt(2 L), zero
  biases), token embedding N(0, 0.02), positions N(0, 0.01).
- DiT (Peebles & Xie): patch Linear on patchify's (py, px, c) order (the
  stride-p conv's flattened weight), fixed 2-D sin-cos positions (MAE, column
  first), timestep embedder (256 sinusoids [cos | sin], Linear, SiLU,
  Linear), cond = t_emb + Linear(pooled); adaLN-Zero blocks (LayerNorms
  without affine, eps 1e-6; tanh GELU) with a cross-attention sublayer
  x += cross(norm_cross(x), caption tokens, key mask) between attention and
  MLP (norm_cross affine, no gate); final adaLN layer; unpatchify. Init as
  DiT's initialize_weights: xavier_uniform on every weight matrix, zero
  biases, timestep MLP weights N(0, 0.02), adaLN and final projection zero.
  Parameter names are libfm's (text.*, dit.*).
- objective: rectified flow, t = sigmoid(N(0, 1)) (logit-normal),
  x_t = (1 - t) x0 + t noise, target velocity noise - x0, the network sees
  t * 1000; loss = batch mean of the per-sample MSE.
- condition dropout: each training caption becomes the empty caption
  (end-of-text at position 0) with probability cond_drop.
- optimizer: AdamW (beta1, beta2), eps 1e-8, weight decay only on Linear
  weights (not on norms, biases, embeddings); linear warmup (lr (s+1)/warmup)
  then cosine to min_lr; global grad-norm clipping; EMA of the weights with
  decay min(ema_decay, (1 + step) / (10 + step)) after every step.
- evaluation (EMA weights): validation loss on the first eval_samples
  images of the val folder, image i at t = (i + 0.5) / n, noise from a
  generator seeded 12345 drawn batch by batch, real captions.
- data: captions.jsonl + PNGs, images / 255 then (x - 0.5) / 0.5 = [-1, 1],
  no augmentation; a shuffled order per epoch, last partial batch dropped.
  (PNGs are decoded in the training thread on first use and kept as uint8,
  so the first epoch's steps include decoding; libfm's loader decodes in
  data.workers threads every epoch.)
- captions: the byte-level BPE of data/shapes/shapes.tok (libfm's file read
  and applied here: GPT-2 pre-tokens, lowest-rank merge first), truncated to
  context_length - 1 tokens, then <|endoftext|>, then id 0 padding; so the
  ids, the end-of-text positions and the vocabulary (embedding table) are
  libfm's (checked against `fm prepare text` on every shapes caption). The
  longest shapes caption is 22 tokens, so the recipe's 24 cut none (20 would
  cut 2.9% of them, in libfm and here alike). (The pre-token pattern is
  Python's re approximation of GPT-2's \\p{L}/\\p{N} classes: exact for
  ASCII captions such as the shapes'.)
Random numbers (init, order, times, noise, dropout) come from torch's own
generators, so curves agree statistically, not bit for bit.

usage: python3 bench/peers/train_dit.py [--width 192 --layers 6 ... --threads N]
  train (default): a header line (with the parameter count, as fm train's), then JSON lines:
    {"step", "train_loss", "train_loss_avg", "lr", "grad_norm", "cond_dropped", "img_per_s", "elapsed_s"}
        every --log_every steps,
    {"step", "val_loss", "train_loss", "elapsed_s"} every --eval_every steps and at the end,
    {"final": true, "steps", "params", "val_loss", ...} last.
  --bench [--steps N]: as `fm bench train` (DiffusionTask::bench_step): synthetic batches
    (images ~ N(0, 1), caption ids uniform over the vocabulary, end-of-text at L - 1), forward + loss +
    backward + AdamW (no clipping, schedule or EMA), one warm-up step, the median of N (default 10);
    one JSON line {samples_per_s, step_s, params, gflops, threads, ...}.
  --sample_bench [--steps N]: times sampling as tasks::generate: the first --sample_batch (64) test
    captions and as many empty captions encoded once, then --sample_steps (40) flow-Euler steps, each one
    DiT call on the conditional and unconditional halves in one batch (2 x 64 rows) combined with
    guidance --cfg (3); one warm-up call with 1 step, the median of N (default 3) full runs; one JSON
    line {images_per_s, run_s, ...}. The weights are the initial ones (timing only).
"""
import argparse
import base64
import copy
import json
import math
import os
import re
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

EOT_TEXT = "<|endoftext|>"
TIMESTEPS = 1000       # diffusion.timesteps: the flow's timestep scale
FREQUENCY_DIM = 256    # DiTOptions::frequency_dim
VAL_NOISE_SEED = 12345  # DiffusionTask::validation_loss


def parse_args(argv):
    class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    # Defaults: experiments/t2i_shapes.ini, else libfm's defaults for the keys it leaves out.
    a = p.add_argument
    a("--image_size", type=int, default=32)
    a("--channels", type=int, default=3)
    a("--patch_size", type=int, default=4)
    a("--width", type=int, default=192)
    a("--layers", type=int, default=6)
    a("--heads", type=int, default=6)
    a("--mlp_hidden", type=int, default=0, help="0: 4 x width")
    a("--context_length", type=int, default=24)
    a("--text_width", type=int, default=128)
    a("--text_layers", type=int, default=2)
    a("--text_heads", type=int, default=4)
    a("--cond_drop", type=float, default=0.1)
    a("--batch_size", type=int, default=64)
    a("--max_steps", type=int, default=2000)
    a("--lr", type=float, default=1e-3)
    a("--min_lr", type=float, default=5e-5)
    a("--warmup_steps", type=int, default=200)
    a("--schedule", default="cosine", choices=["cosine", "linear", "constant"])
    a("--beta1", type=float, default=0.9)
    a("--beta2", type=float, default=0.99)
    a("--weight_decay", type=float, default=0.0)
    a("--grad_clip", type=float, default=1.0, help="0: off")
    a("--ema_decay", type=float, default=0.999, help="0: no EMA (evaluate the trained weights)")
    a("--eval_every", type=int, default=1000, help="0: only at the end")
    a("--log_every", type=int, default=50)
    a("--eval_samples", type=int, default=512, help="0: the whole val folder")
    a("--seed", type=int, default=1337)
    a("--train", default="data/shapes/32/train")
    a("--val", default="data/shapes/32/test")
    a("--tokenizer", default="data/shapes/shapes.tok")
    a("--threads", type=int, default=1)
    a("--device", default="cpu")
    a("--compile", action="store_true", help="torch.compile the model's forward")
    a("--bench", action="store_true", help="time training steps on synthetic batches")
    a("--sample_bench", action="store_true", help="time guided flow-Euler sampling")
    a("--steps", type=int, default=None, help="timed repetitions (--bench 10, --sample_bench 3)")
    a("--sample_steps", type=int, default=40)
    a("--cfg", type=float, default=3.0)
    a("--sample_batch", type=int, default=64)
    return p.parse_args(argv)


# ---------------------------------------------------------------- captions

# GPT-2's pre-token pattern in Python's re: [^\W\d_] for \p{L}, \d for \p{N}.
PRETOKEN = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class BpeTokenizer:
    """Reads libfm's tokenizer file ("libfm-bpe 1", "special <id> <base64>",
    "<base64 bytes> <id>" lines) and encodes as fm::text::BpeTokenizer: each
    pre-token's bytes merged pairwise, the pair whose concatenation has the
    lowest id first, leftmost on ties."""

    def __init__(self, path):
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8").split("\n")
        if lines[0] != "libfm-bpe 1":
            sys.exit(f"train_dit.py: {path} is not a libfm-bpe 1 tokenizer file")
        self.rank, self.special = {}, {}
        for line in lines[1:]:
            if not line:
                continue
            if line.startswith("special "):
                _, i, b = line.split(" ")
                self.special[base64.b64decode(b).decode("utf-8")] = int(i)
            else:
                b, i = line.split(" ")
                self.rank[base64.b64decode(b)] = int(i)
        self.vocab_size = max(list(self.rank.values()) + list(self.special.values())) + 1
        if EOT_TEXT not in self.special:
            sys.exit(f"train_dit.py: {path}: captions need an {EOT_TEXT} special token")
        self.eot = self.special[EOT_TEXT]
        self._pieces = {}

    def _merge(self, piece):
        parts = [bytes([c]) for c in piece]
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = self.rank.get(parts[i] + parts[i + 1])
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        return [self.rank[p] for p in parts]

    def encode(self, text):
        ids = []
        for piece in PRETOKEN.findall(text):
            if piece not in self._pieces:
                self._pieces[piece] = self._merge(piece.encode("utf-8"))
            ids += self._pieces[piece]
        return ids

    def caption(self, text, L):
        """tokenize_caption: ids truncated to L - 1, end-of-text, zero padding; and the end-of-text index."""
        ids = self.encode(text)[:L - 1]
        return ids + [self.eot] + [0] * (L - 1 - len(ids)), len(ids)


def tokenize_all(tok, captions, L):
    rows = [tok.caption(c, L) for c in captions]
    return torch.tensor([r for r, _ in rows], dtype=torch.int64), torch.tensor([e for _, e in rows], dtype=torch.int64)


# ---------------------------------------------------------------- data

class CaptionFolder:
    """A captions.jsonl folder; images decoded on first use and kept as uint8."""

    def __init__(self, folder, size, channels):
        path = os.path.join(folder, "captions.jsonl")
        if not os.path.exists(path):
            sys.exit(f"train_dit.py: {path} not found (tools/prepare-data experiments/t2i_shapes.ini)")
        self.files, self.captions = [], []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    self.files.append(os.path.join(folder, r.get("file", r.get("image"))))
                    self.captions.append(r["caption"])
        if channels not in (1, 3):
            sys.exit("train_dit.py: channels must be 1 or 3")
        self.size, self.channels = size, channels
        self.cache = np.zeros((len(self.files), size, size, channels), dtype=np.uint8)
        self.loaded = np.zeros(len(self.files), dtype=bool)

    def __len__(self):
        return len(self.files)

    def images(self, idx):
        """[b, C, S, S] float32 in [-1, 1] (fm::image::to_tensor with mean = std = 0.5)."""
        idx = np.asarray(idx, dtype=np.int64)
        for i in idx[~self.loaded[idx]]:
            img = Image.open(self.files[i]).convert("RGB" if self.channels == 3 else "L")
            if img.size != (self.size, self.size):
                sys.exit(f"train_dit.py: {self.files[i]} is {img.size}, model image_size {self.size} "
                         "(resizing is not mirrored)")
            self.cache[i] = np.asarray(img).reshape(self.size, self.size, self.channels)
            self.loaded[i] = True
        x = torch.from_numpy(self.cache[idx]).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        return (x - 0.5) / 0.5


# ---------------------------------------------------------------- model

class Attention(nn.Module):
    """nn::MultiheadAttention: self (qkv) or cross (q from x; kv from the context, rows k | v)."""

    def __init__(self, d, heads, cross=False, context_dim=0):
        super().__init__()
        if heads <= 0 or d % heads:
            sys.exit(f"train_dit.py: width {d} must be a positive multiple of heads {heads}")
        self.heads, self.is_cross = heads, cross
        if cross:
            self.q = nn.Linear(d, d)
            self.kv = nn.Linear(context_dim or d, 2 * d)
        else:
            self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, context=None, mask=None, causal=False):
        B, T, C = x.shape
        H, Dh = self.heads, C // self.heads
        if self.is_cross:
            S = context.shape[1]
            q = self.q(x).view(B, T, H, Dh).transpose(1, 2)
            k, v = self.kv(context).view(B, S, 2, H, Dh).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, d, hidden, approximate):
        super().__init__()
        self.approximate = approximate
        self.fc = nn.Linear(d, hidden)
        self.proj = nn.Linear(hidden, d)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class Block(nn.Module):
    """nn::TransformerBlock, pre-norm; adaLN-Zero when cond_dim > 0 (norm1/norm2 then without affine)."""

    def __init__(self, d, heads, mlp_hidden=0, approximate="none", eps=1e-5, cross=False, context_dim=0, cond_dim=0):
        super().__init__()
        ada = cond_dim > 0
        self.norm1 = nn.LayerNorm(d, eps=eps, elementwise_affine=not ada)
        self.attn = Attention(d, heads)
        self.norm_cross = nn.LayerNorm(d, eps=eps) if cross else None
        self.cross = Attention(d, heads, True, context_dim) if cross else None
        self.norm2 = nn.LayerNorm(d, eps=eps, elementwise_affine=not ada)
        self.mlp = MLP(d, mlp_hidden or 4 * d, approximate)
        self.ada = nn.Linear(cond_dim, 6 * d) if ada else None

    def forward(self, x, causal=False, cond=None, context=None, key_mask=None):
        if self.ada is None:
            x = x + self.attn(self.norm1(x), causal=causal)
            if self.cross is not None:
                x = x + self.cross(self.norm_cross(x), context, key_mask)
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(cond)).unsqueeze(1).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (scale1 + 1) + shift1, causal=causal)
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), context, key_mask)
        return x + gate2 * self.mlp(self.norm2(x) * (scale2 + 1) + shift2)


class Core(nn.Module):
    """nn::Transformer: blocks and a final norm."""

    def __init__(self, layers, final_norm_affine=True, **block):
        super().__init__()
        self.blocks = nn.ModuleList(Block(**block) for _ in range(layers))
        self.norm = nn.LayerNorm(block["d"], eps=block.get("eps", 1e-5), elementwise_affine=final_norm_affine)

    def forward(self, x, **inputs):
        for b in self.blocks:
            x = b(x, **inputs)
        return self.norm(x)


class CaptionEncoder(nn.Module):
    def __init__(self, vocab, L, width, layers, heads):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Embedding(L, width)
        self.core = Core(layers, d=width, heads=heads)
        residual_std = 0.02 / math.sqrt(2 * layers)  # nn::init_gpt2
        with torch.no_grad():
            for name, p in self.core.named_parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, 0.0, residual_std if name.endswith("proj.weight") else 0.02)
                elif name.endswith(".bias") and "norm" not in name:
                    nn.init.zeros_(p)
            nn.init.normal_(self.token_embedding.weight, 0.0, 0.02)
            nn.init.normal_(self.positional_embedding.weight, 0.0, 0.01)

    def forward(self, ids, eot):
        """-> tokens [B, L, D], pooled [B, D] (at end-of-text), key mask [B, 1, 1, L] (positions <= eot)."""
        B, L = ids.shape
        pos = torch.arange(L, device=ids.device)
        h = self.core(self.token_embedding(ids) + self.positional_embedding(pos), causal=True)
        pooled = h[torch.arange(B, device=ids.device), eot]
        mask = pos.unsqueeze(0) <= eot.unsqueeze(1)
        return h, pooled, mask[:, None, None, :]


def sincos_2d(dim, grid):
    """image::sincos_pos_embed_2d: per patch (row r, column c), [sin | cos](c * omega), [sin | cos](r * omega)."""
    q = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(q, dtype=torch.float64) / q)
    g = torch.arange(grid, dtype=torch.float64)
    r, c = torch.meshgrid(g, g, indexing="ij")
    parts = []
    for pos in (c.reshape(-1), r.reshape(-1)):
        a = pos[:, None] * omega[None, :]
        parts += [a.sin(), a.cos()]
    return torch.cat(parts, dim=1).float()


def timestep_sinusoids(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(max_period) / half))
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([args.cos(), args.sin()], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepEmbedding(nn.Module):
    def __init__(self, frequency_dim, d):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.fc1 = nn.Linear(frequency_dim, d)
        self.fc2 = nn.Linear(d, d)

    def forward(self, t):
        return self.fc2(F.silu(self.fc1(timestep_sinusoids(t, self.frequency_dim))))


class DiT(nn.Module):
    def __init__(self, image_size, channels, patch, width, layers, heads, mlp_hidden, cond_dim, context_dim):
        super().__init__()
        if image_size % patch:
            sys.exit(f"train_dit.py: image_size {image_size} must be a multiple of patch_size {patch}")
        if width % 4:
            sys.exit(f"train_dit.py: width must be a multiple of 4 (2-D sin-cos positions), got {width}")
        self.image_size, self.channels, self.patch = image_size, channels, patch
        w, patch_dim = width, patch * patch * channels
        self.patch_proj = nn.Linear(patch_dim, w)
        self.register_buffer("pos", sincos_2d(w, image_size // patch), persistent=False)
        self.t_embed = TimestepEmbedding(FREQUENCY_DIM, w)
        self.cond_proj = nn.Linear(cond_dim, w)
        self.core = Core(layers, final_norm_affine=False, d=w, heads=heads, mlp_hidden=mlp_hidden, approximate="tanh",
                         eps=1e-6, cross=True, context_dim=context_dim, cond_dim=w)
        self.final_ada = nn.Linear(w, 2 * w)
        self.final_proj = nn.Linear(w, patch_dim)
        # DiT's initialize_weights (as DiT::DiT).
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    nn.init.xavier_uniform_(p)
                elif "norm" not in name and name.endswith(".bias"):
                    nn.init.zeros_(p)
            nn.init.normal_(self.t_embed.fc1.weight, 0.0, 0.02)
            nn.init.normal_(self.t_embed.fc2.weight, 0.0, 0.02)
            for m in [b.ada for b in self.core.blocks] + [self.final_ada, self.final_proj]:
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def patchify(self, x):  # [B, C, H, W] -> [B, N, p*p*C], patches row-major, (py, px, c) inside
        B, C, H, W = x.shape
        p = self.patch
        return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x):
        B, p, C, g = x.shape[0], self.patch, self.channels, self.image_size // self.patch
        return x.reshape(B, g, g, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, g * p, g * p)

    def forward(self, x, t, pooled, context, key_mask):
        c = self.t_embed(t) + self.cond_proj(pooled)
        h = self.core(self.patch_proj(self.patchify(x)) + self.pos, cond=c, context=context, key_mask=key_mask)
        shift, scale = self.final_ada(F.silu(c)).unsqueeze(1).chunk(2, dim=-1)
        return self.unpatchify(self.final_proj(h * (scale + 1) + shift))


class TextToImage(nn.Module):
    def __init__(self, a, vocab):
        super().__init__()
        self.text = CaptionEncoder(vocab, a.context_length, a.text_width, a.text_layers, a.text_heads)
        self.dit = DiT(a.image_size, a.channels, a.patch_size, a.width, a.layers, a.heads, a.mlp_hidden,
                       cond_dim=a.text_width, context_dim=a.text_width)

    def forward(self, x_t, timesteps, ids, eot):
        tokens, pooled, mask = self.text(ids, eot)
        return self.dit(x_t, timesteps, pooled, tokens, mask)

    def param_groups(self, weight_decay):
        # libfm's kNoDecay: biases, norms, embeddings; Linear weights decay.
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            (decay if p.dim() == 2 and "embedding" not in name else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def flops_per_image(a, text_params):
    """DiffusionTask::flops_per_sample: dit_flops_per_image + 6 x caption-encoder parameters x L."""
    N = (a.image_size // a.patch_size) ** 2
    w, P = a.width, a.patch_size ** 2 * a.channels
    hidden = a.mlp_hidden or 4 * w
    S, cd, L = a.context_length, a.text_width, a.context_length
    block = 2.0 * N * (4.0 * w * w + 2.0 * w * hidden) + 4.0 * N * N * w + 2.0 * w * 6.0 * w
    block += 2.0 * N * 2.0 * w * w + 2.0 * S * cd * 2.0 * w + 4.0 * N * S * w
    forward = (2.0 * N * P * w + 2.0 * (FREQUENCY_DIM * w + w * w) + 2.0 * a.text_width * w
               + a.layers * block + 2.0 * w * 2.0 * w + 2.0 * N * w * P)
    return 3.0 * forward + 6.0 * text_params * L


# ---------------------------------------------------------------- objective

def noised(x0, t, noise):
    """objectives::Diffusion::make for flow/velocity: t [B] f64 in [0, 1] -> x_t, target, network timesteps."""
    shape = (-1,) + (1,) * (x0.dim() - 1)
    alpha = (1.0 - t).to(x0.dtype).view(shape).to(x0.device)
    sigma = t.to(x0.dtype).view(shape).to(x0.device)
    return alpha * x0 + sigma * noise, noise - x0, (t * TIMESTEPS).float().to(x0.device)


def flow_loss(pred, target):
    return (pred - target).square().mean(dim=tuple(range(1, pred.dim()))).mean()


def lr_at(step, a):
    """optim::LRSchedule::at."""
    if step < a.warmup_steps:
        return a.lr * (step + 1) / a.warmup_steps
    if a.schedule == "constant":
        return a.lr
    if step >= a.max_steps:
        return a.min_lr
    progress = (step - a.warmup_steps) / (a.max_steps - a.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress)) if a.schedule == "cosine" else 1.0 - progress
    return a.min_lr + coeff * (a.lr - a.min_lr)


@torch.no_grad()
def validation_loss(model, val, cap_ids, cap_eot, a, device):
    """DiffusionTask::validation_loss (flow): image i of the first n at t = (i + 0.5) / n, fixed noise."""
    gen = torch.Generator().manual_seed(VAL_NOISE_SEED)
    n = min(a.eval_samples, len(val)) if a.eval_samples > 0 else len(val)
    total, count = 0.0, 0
    for start in range(0, n, a.batch_size):
        idx = np.arange(start, min(start + a.batch_size, n))
        x0 = val.images(idx).to(device)
        t = torch.tensor([(i + 0.5) / n for i in idx], dtype=torch.float32).double()  # f32 times, as libfm
        noise = torch.randn(x0.shape, generator=gen).to(device)
        x_t, target, ts = noised(x0, t, noise)
        pred = model(x_t, ts, cap_ids[idx].to(device), cap_eot[idx].to(device))
        total += flow_loss(pred, target).item() * len(idx)
        count += len(idx)
    return total / count


def flow_euler_sigmas(steps, T=TIMESTEPS):
    """FlowSampler::base_sigmas with shift 1, then 0: linspace(T, 1, n) / T in f32."""
    sigma_min = float(np.float32(1.0 / T))
    s = [float(np.float32(v / T)) for v in np.linspace(T, sigma_min * T, steps)]
    return s + [0.0]


@torch.no_grad()
def generate(model, ids, eot, null_ids, null_eot, steps, cfg, gen, device):
    """tasks::generate with flow_euler: conditional rows first, then as many empty captions."""
    N = ids.shape[0]
    guided = cfg != 1.0
    all_ids, all_eot = ids, eot
    if guided:
        all_ids = torch.cat([ids, null_ids.expand(N, -1)], 0)
        all_eot = torch.cat([eot, null_eot.expand(N)], 0)
    tokens, pooled, mask = model.text(all_ids.to(device), all_eot.to(device))
    d = model.dit
    dims = getattr(d, "_orig_mod", d)  # the module under torch.compile's wrapper
    x = torch.randn(N, dims.channels, dims.image_size, dims.image_size, generator=gen).to(device)
    sig = flow_euler_sigmas(steps)
    for i in range(steps):
        t = torch.full((N,), float(np.float32(sig[i] * TIMESTEPS)), device=device)
        if guided:
            out = d(torch.cat([x, x], 0), torch.cat([t, t], 0), pooled, tokens, mask)
            cond, uncond = out[:N], out[N:]
            v = uncond + (cond - uncond) * cfg
        else:
            v = d(x, t, pooled, tokens, mask)
        x = x + v * (sig[i + 1] - sig[i])
    return x


# ---------------------------------------------------------------- modes

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(model, fwd, a, vocab, device, params):
    opt = torch.optim.AdamW(model.param_groups(a.weight_decay), lr=a.lr, betas=(a.beta1, a.beta2), eps=1e-8)
    B, L = a.batch_size, a.context_length
    images = torch.randn(B, a.channels, a.image_size, a.image_size).to(device)
    ids = torch.randint(0, vocab, (B, L)).to(device)
    eot = torch.full((B,), L - 1, dtype=torch.int64).to(device)
    gen = torch.Generator().manual_seed(a.seed * 2 + 1)
    model.train()

    def step():
        opt.zero_grad(set_to_none=False)
        t = torch.sigmoid(torch.randn(B, dtype=torch.float64, generator=gen))
        x_t, target, ts = noised(images, t, torch.randn(images.shape, generator=gen).to(device))
        loss = flow_loss(fwd(x_t, ts, ids, eot), target)
        loss.backward()
        opt.step()
        loss.item()

    step()  # warm-up, as train::bench_train
    times = []
    for k in range(a.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        print(f"step {k + 1}/{a.steps}: {times[-1]:.3f} s", file=sys.stderr)
    step_s = sorted(times)[len(times) // 2]
    text_params = sum(p.numel() for p in model.text.parameters())
    print(json.dumps({
        "peer": "pytorch " + torch.__version__, "kind": "diffusion", "samples_per_s": B / step_s, "step_s": step_s,
        "params": params, "gflops": B / step_s * flops_per_image(a, text_params) / 1e9, "threads": a.threads,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": str(device),
        "precision": "f32", "compile": a.compile}), flush=True)


def sample_bench(model, a, tok, device, params):
    captions = CaptionFolder(a.val, a.image_size, a.channels).captions
    captions = [captions[i % len(captions)] for i in range(a.sample_batch)]
    ids, eot = tokenize_all(tok, captions, a.context_length)
    null_row, null_eot = tok.caption("", a.context_length)
    null_ids, null_eot = torch.tensor([null_row]), torch.tensor([null_eot])
    model.eval()
    run = lambda steps, seed: generate(model, ids, eot, null_ids, null_eot, steps, a.cfg,
                                       torch.Generator().manual_seed(seed), device)
    run(1, 0)  # warm-up: one guided call
    times = []
    for k in range(a.steps):
        sync(device)
        t0 = time.perf_counter()
        x = run(a.sample_steps, 1 + k)
        sync(device)
        times.append(time.perf_counter() - t0)
        print(f"run {k + 1}/{a.steps}: {times[-1]:.3f} s ({a.sample_steps} steps, |x| max {x.abs().max().item():.2f})",
              file=sys.stderr)
    run_s = sorted(times)[len(times) // 2]
    print(json.dumps({
        "peer": "pytorch " + torch.__version__, "kind": "diffusion_sample", "images": a.sample_batch,
        "sample_steps": a.sample_steps, "cfg": a.cfg, "sampler": "flow_euler", "images_per_s": a.sample_batch / run_s,
        "run_s": run_s, "params": params, "threads": a.threads,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": str(device),
        "precision": "f32", "compile": a.compile}), flush=True)


def train(model, fwd, a, tok, device, params):
    train_set = CaptionFolder(a.train, a.image_size, a.channels)
    val = CaptionFolder(a.val, a.image_size, a.channels) if a.val else None
    L = a.context_length
    train_ids, train_eot = tokenize_all(tok, train_set.captions, L)
    val_ids, val_eot = tokenize_all(tok, val.captions, L) if val else (None, None)
    null_row, null_eot = tok.caption("", L)
    null_ids = torch.tensor(null_row)
    if not 0 <= a.cond_drop < 1:
        sys.exit(f"train_dit.py: cond_drop must be in [0, 1), got {a.cond_drop}")
    if a.schedule != "constant" and a.max_steps <= a.warmup_steps:
        sys.exit("train_dit.py: the decay needs max_steps > warmup_steps")

    opt = torch.optim.AdamW(model.param_groups(a.weight_decay), lr=a.lr, betas=(a.beta1, a.beta2), eps=1e-8)
    ema = None
    if a.ema_decay > 0:
        ema = copy.deepcopy(model).eval()
        ema.requires_grad_(False)
    params_live = list(model.parameters())
    params_ema = list(ema.parameters()) if ema is not None else []
    order_gen = torch.Generator().manual_seed(a.seed)
    noise_gen = torch.Generator().manual_seed(a.seed * 2 + 1)
    drop_gen = torch.Generator().manual_seed(a.seed * 2 + 2)
    B, N = a.batch_size, len(train_set)
    per_epoch = N // B
    if per_epoch == 0:
        sys.exit(f"train_dit.py: {N} training images make no batch of {B}")
    print(f"train_dit.py: {a.train} | diffusion | {params / 1e6:.2f}M parameters ({params}) | torch {torch.__version__} | "
          f"{device} | {a.threads} threads | steps 0..{a.max_steps}", flush=True)

    def evaluate(step, loss):
        out = {"step": step, "train_loss": loss, "elapsed_s": time.time() - t0}
        if val is not None:
            out["val_loss"] = validation_loss(ema if ema is not None else model.eval(), val, val_ids, val_eot, a, device)
            model.train()
        print(json.dumps(out), flush=True)
        return out

    t0 = t_log = time.time()
    n_log, steps_log, loss_sum, dropped_sum, last, order = 0, 0, 0.0, 0, {}, None
    log_every = max(1, a.log_every)
    model.train()
    for step in range(a.max_steps):
        k = step % per_epoch
        if k == 0:
            order = torch.randperm(N, generator=order_gen)
        idx = order[k * B:(k + 1) * B].numpy()
        x0 = train_set.images(idx).to(device)
        ids, eot = train_ids[idx].clone(), train_eot[idx].clone()
        if a.cond_drop > 0:  # DiffusionTask::drop_captions
            drop = torch.rand(B, generator=drop_gen) < a.cond_drop
            ids[drop] = null_ids
            eot[drop] = null_eot
            dropped_sum += int(drop.sum())
        t = torch.sigmoid(torch.randn(B, dtype=torch.float64, generator=noise_gen))  # logit-normal (0, 1)
        noise = torch.randn(x0.shape, generator=noise_gen).to(device)
        x_t, target, ts = noised(x0, t, noise)
        lr = lr_at(step, a)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = flow_loss(fwd(x_t, ts, ids.to(device), eot.to(device)), target)
        loss.backward()
        loss_v = loss.item()
        if not math.isfinite(loss_v):
            sys.exit(f"train_dit.py: training diverged at step {step + 1}: loss is {loss_v}")
        gnorm = torch.nn.utils.clip_grad_norm_(params_live, a.grad_clip).item() if a.grad_clip > 0 else float("nan")
        opt.step()
        if ema is not None:  # optim::EMA::update(model, step): decay warms up as diffusers'
            decay = min(a.ema_decay, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                torch._foreach_lerp_(params_ema, params_live, 1.0 - decay)
        done = step + 1
        n_log += B
        steps_log += 1
        loss_sum += loss_v
        if done % log_every == 0 or done == a.max_steps:
            now = time.time()
            print(json.dumps({"step": done, "train_loss": loss_v, "train_loss_avg": loss_sum / steps_log, "lr": lr,
                              "grad_norm": gnorm, "cond_dropped": dropped_sum / n_log, "img_per_s": n_log / (now - t_log),
                              "elapsed_s": now - t0}), flush=True)
            t_log, n_log, steps_log, loss_sum, dropped_sum = now, 0, 0, 0.0, 0
        if (a.eval_every > 0 and done % a.eval_every == 0) or done == a.max_steps:
            last = evaluate(done, loss_v)
    final = {"final": True, "steps": a.max_steps, "params": params, "threads": a.threads, "device": str(device),
             "elapsed_s": time.time() - t0, "peer": "pytorch " + torch.__version__, "compile": a.compile}
    final.update({k: v for k, v in last.items() if k not in ("step", "elapsed_s")})
    print(json.dumps(final), flush=True)


def main():
    a = parse_args(sys.argv[1:])
    if a.bench and a.sample_bench:
        sys.exit("train_dit.py: --bench and --sample_bench are separate runs")
    if a.steps is None:
        a.steps = 3 if a.sample_bench else 10
    torch.set_num_threads(a.threads)
    # As gpt_step.py: PyTorch's CPU kernels slow down sharply on denormals; run the peer in its fastest setting.
    torch.set_flush_denormal(True)
    device = torch.device(a.device)
    tok = BpeTokenizer(a.tokenizer)
    torch.manual_seed(a.seed)
    model = TextToImage(a, tok.vocab_size).to(device)
    params = sum(p.numel() for p in model.parameters())
    fwd = torch.compile(model) if a.compile else model
    if a.bench:
        bench(model, fwd, a, tok.vocab_size, device, params)
    elif a.sample_bench:
        if a.compile:
            model.dit = torch.compile(model.dit)
        sample_bench(model, a, tok, device, params)
    else:
        train(model, fwd, a, tok, device, params)


if __name__ == "__main__":
    main()

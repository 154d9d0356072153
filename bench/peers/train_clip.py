#!/usr/bin/env python3
"""PyTorch peer of `fm train` for CLIP recipes ([task] kind = clip) on IDX data
(Fashion-MNIST): trains the same CLIP as tasks/image/clip_model.cpp and
evaluates zero-shot top-1 as tasks/image/clip_eval.cpp does.

Same as libfm:
- model: ViT image tower (patch Linear over patchify's (py, px, c) order,
  class token, learned positions, pre-norm blocks, exact GELU, final norm on
  every token, CLS or mean pooling), text tower (token + position embeddings,
  causal blocks, final norm, features at the end-of-text position), bias-free
  projections, L2 normalisation, logit_scale = ln(1/0.07) clamped at ln(100)
  in the forward; init: patch Linear torch's default, blocks GPT-2 (0.02,
  residual projections 0.02/sqrt(2 L), zero biases), class token and
  positions width^-0.5, token embedding 0.02, text positions 0.01,
  projections width^-0.5.
- loss: (CE(image->text) + CE(text->image)) / 2.
- data: IDX images / 255, (x - mean) / std; captions = one of the 12 prompt
  templates (chosen uniformly per sample and epoch) around the class name,
  UTF-8 bytes + <|endoftext|> (id 256), truncated to context_length - 1,
  zero padding; a shuffled order per epoch, last partial batch dropped.
- optimizer: AdamW (0.9, beta2), eps 1e-8, weight decay only on Linear
  weights (not on norms, biases, embeddings, class token, positions,
  logit_scale); linear warmup then cosine/linear to min_lr; grad norm clip.
- evaluation: zero-shot top-1 over the first eval_samples images of
  data.zeroshot (0: all), each class's text features the normalised mean of
  its normalised template features (prompt ensembling).
Random numbers (init, order, templates) come from torch's own generator, so
curves agree statistically, not bit for bit.

usage: python3 bench/peers/train_clip.py RECIPE.ini [--key=value ...] [--threads N]
Prints a progress line every train.log_every steps, one JSON line per
evaluation: {"step", "zeroshot_top1", "train_loss", "elapsed_s"}, and a final
JSON line {"final": true, ...}.
"""
import configparser
import gzip
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# datasets/src/image_text.cpp default_caption_templates()
TEMPLATES = [
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a close-up photo of a {}.", "a bright photo of a {}.",
    "a cropped photo of a {}.", "a good photo of a {}.", "a photo of the {}.",
    "a rendering of a {}.", "a drawing of a {}.", "a photo of one {}.",
]
# datasets/src/idx.cpp fashion_mnist_classes()
FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
EOT = 256        # <|endoftext|> after the 256 bytes
VOCAB = 257
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)

# Defaults of the keys a recipe may leave out (libfm/train/src/recipe.cpp, tasks/image/clip_task.cpp).
DEFAULTS = {
    "model.image_size": "32", "model.patch_size": "4", "model.channels": "3", "model.vision_width": "128",
    "model.vision_layers": "4", "model.vision_heads": "4", "model.pool": "cls", "model.vocab_size": "0",
    "model.context_length": "32", "model.text_width": "128", "model.text_layers": "4", "model.text_heads": "4",
    "model.embed_dim": "128", "model.shared_core": "false", "model.loss": "clip",
    "train.batch_size": "8", "train.max_steps": "1000", "train.lr": "1e-3", "train.min_lr": "1e-4",
    "train.warmup_steps": "100", "train.schedule": "cosine", "train.weight_decay": "0.1", "train.beta1": "0.9",
    "train.beta2": "0.99", "train.grad_clip": "1.0", "train.eval_every": "250", "train.log_every": "10",
    "train.eval_samples": "1000", "train.seed": "1337",
    "data.zeroshot": "", "data.classes": "", "data.templates": "false", "data.tokenizer": "",
    "data.random_crop": "false", "data.hflip": "false", "data.mean": "0.5", "data.std": "0.5",
}


def read_config(path, overrides):
    cp = configparser.ConfigParser(inline_comment_prefixes=("#",))
    cp.read(path)
    cfg = dict(DEFAULTS)
    cfg.update({f"{s}.{k}": v.strip() for s in cp.sections() for k, v in cp[s].items()})
    for o in overrides:
        k, v = o[2:].split("=", 1)
        cfg[k] = v
    return cfg


def truthy(v):
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def check_supported(c):
    if c["model.loss"] != "clip":
        sys.exit("train_clip.py: only model.loss = clip is mirrored")
    if truthy(c["model.shared_core"]):
        sys.exit("train_clip.py: model.shared_core is not mirrored")
    if c["data.tokenizer"]:
        sys.exit("train_clip.py: only the byte tokenizer (data.tokenizer empty) is mirrored")
    if truthy(c["data.random_crop"]) or truthy(c["data.hflip"]):
        sys.exit("train_clip.py: augmentation (data.random_crop, data.hflip) is not mirrored")
    if int(c["model.vocab_size"]) not in (0, VOCAB):
        sys.exit("train_clip.py: model.vocab_size must be 0 or 257 with the byte tokenizer")


# ---------------------------------------------------------------- data

def read_idx(path):
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    assert magic >> 8 == 0x08, f"{path}: not an unsigned-byte IDX file"
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def open_idx(spec):
    if not spec.startswith("idx:"):
        sys.exit(f"train_clip.py: only idx:IMAGES,LABELS sources are mirrored, got '{spec}'")
    images, labels = (s.strip() for s in spec[4:].split(","))
    x, y = read_idx(images), read_idx(labels).astype(np.int64)
    assert len(x) == len(y), spec
    return torch.from_numpy(x.copy()), torch.from_numpy(y)


def parse_classes(v):
    return FASHION_MNIST if v == "fashion-mnist" else [s.strip() for s in v.split(",") if s.strip()]


def parse_floats(v, channels):
    out = [float(s) for s in v.split(",") if s.strip()]
    return out + [out[0]] * (channels - len(out)) if len(out) == 1 else out


def tokenize(caption, L):
    ids = list(caption.encode("utf-8"))[:L - 1]
    row = ids + [EOT] + [0] * (L - 1 - len(ids))
    return row, len(ids)


def normalise(images_u8, mean, std, channels):
    # [N, H, W] (grey) or [N, H, W, C] uint8 -> [N, C, H, W] f32 as fm::image::to_tensor
    x = images_u8.float() * (1.0 / 255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != channels:
        sys.exit(f"train_clip.py: images have {x.shape[1]} channels, the model {channels}")
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------- model

class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn_qkv, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, causal):
        B, T, C = x.shape
        q, k, v = self.attn_qkv(self.norm1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.mlp_fc(self.norm2(x))))


class Transformer(nn.Module):
    def __init__(self, d, layers, heads):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        residual_std = 0.02 / math.sqrt(2 * layers)  # nn::init_gpt2
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, residual_std if name.endswith("proj.weight") else 0.02)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def forward(self, x, causal=False):
        for b in self.blocks:
            x = b(x, causal)
        return self.norm(x)


class CLIP(nn.Module):
    def __init__(self, c):
        super().__init__()
        g = lambda k: int(c[k])
        self.image_size, self.patch, self.channels = g("model.image_size"), g("model.patch_size"), g("model.channels")
        self.pool = c["model.pool"]
        vw, tw, E, L = g("model.vision_width"), g("model.text_width"), g("model.embed_dim"), g("model.context_length")
        n = (self.image_size // self.patch) ** 2 + (1 if self.pool == "cls" else 0)
        # order of construction as clip_model.cpp (torch's generator draws differ anyway)
        self.patch_proj = nn.Linear(self.patch * self.patch * self.channels, vw)  # default init, as libfm's Linear
        self.patch_pos = nn.Parameter(torch.randn(n, vw) / math.sqrt(vw))
        self.cls = nn.Parameter(torch.randn(vw) / math.sqrt(vw)) if self.pool == "cls" else None
        self.visual = Transformer(vw, g("model.vision_layers"), g("model.vision_heads"))
        self.visual_proj = nn.Linear(vw, E, bias=False)
        self.token_embedding = nn.Embedding(VOCAB, tw)
        self.positional_embedding = nn.Embedding(L, tw)
        self.text = Transformer(tw, g("model.text_layers"), g("model.text_heads"))
        self.text_proj = nn.Linear(tw, E, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        nn.init.normal_(self.token_embedding.weight, 0.0, 0.02)
        nn.init.normal_(self.positional_embedding.weight, 0.0, 0.01)
        nn.init.normal_(self.visual_proj.weight, 0.0, 1.0 / math.sqrt(vw))
        nn.init.normal_(self.text_proj.weight, 0.0, 1.0 / math.sqrt(tw))

    def encode_image(self, images):
        B, C, H, W = images.shape
        p = self.patch
        x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, p * p * C)
        x = self.patch_proj(x)
        if self.cls is not None:
            x = torch.cat([self.cls.view(1, 1, -1).expand(B, 1, -1), x], 1)
        h = self.visual(x + self.patch_pos)
        pooled = h[:, 0] if self.pool == "cls" else h.mean(1)
        return F.normalize(self.visual_proj(pooled), dim=-1, eps=1e-12)

    def encode_text(self, ids, eot):
        B, L = ids.shape
        h = self.text(self.token_embedding(ids) + self.positional_embedding(torch.arange(L)), causal=True)
        return F.normalize(self.text_proj(h[torch.arange(B), eot]), dim=-1, eps=1e-12)

    def loss(self, images, ids, eot):
        img, txt = self.encode_image(images), self.encode_text(ids, eot)
        scale = self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        logits = img @ txt.t() * scale
        labels = torch.arange(len(img))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) * 0.5
        return loss, logits

    def param_groups(self, weight_decay):
        # libfm's kNoDecay: norms, biases, embeddings, class token, positions, logit_scale.
        no_decay_names = ("patch_pos", "cls", "token_embedding.", "positional_embedding.", "logit_scale")
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            is_linear_weight = p.dim() == 2 and name.endswith("weight") and not name.startswith(no_decay_names)
            (decay if is_linear_weight else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step, c):
    lr, min_lr = float(c["train.lr"]), float(c["train.min_lr"])
    warm, total, kind = int(c["train.warmup_steps"]), int(c["train.max_steps"]), c["train.schedule"]
    if step < warm:
        return lr * (step + 1) / warm
    if kind == "constant":
        return lr
    if step >= total:
        return min_lr
    t = (step - warm) / (total - warm)
    coeff = 0.5 * (1 + math.cos(math.pi * t)) if kind == "cosine" else 1 - t
    return min_lr + coeff * (lr - min_lr)


def class_text_features(model, classes, templates, L):
    rows = []
    for name in classes:
        toks = [tokenize(t.replace("{}", name, 1), L) for t in templates]
        ids = torch.tensor([r for r, _ in toks])
        eot = torch.tensor([e for _, e in toks])
        rows.append(F.normalize(model.encode_text(ids, eot).mean(0), dim=-1, eps=1e-12))
    return torch.stack(rows)


@torch.no_grad()
def zero_shot(model, images, labels, classes, templates, L, B, limit):
    model.eval()
    feats = class_text_features(model, classes, templates, L)
    n = min(limit, len(images)) if limit > 0 else len(images)
    correct = 0
    for i in range(0, n, B):
        x = images[i:min(i + B, n)]
        correct += (model.encode_image(x) @ feats.t()).argmax(1).eq(labels[i:i + len(x)]).sum().item()
    model.train()
    return correct / n


def main():
    argv = sys.argv[1:]
    threads, rest, i = 1, [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--threads":
            threads, i = int(argv[i + 1]), i + 2
            continue
        if a.startswith("--threads="):
            threads = int(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    if not rest:
        sys.exit(__doc__)
    torch.set_num_threads(threads)
    # As gpt_step.py: PyTorch's CPU kernels slow down sharply on denormals; run the peer in its fastest setting.
    torch.set_flush_denormal(True)
    c = read_config(rest[0], rest[1:])
    check_supported(c)
    torch.manual_seed(int(c["train.seed"]))

    classes = parse_classes(c["data.classes"])
    templates = TEMPLATES if truthy(c["data.templates"]) else ["{}"]
    C, S, L, B = int(c["model.channels"]), int(c["model.image_size"]), int(c["model.context_length"]), int(c["train.batch_size"])
    mean, std = parse_floats(c["data.mean"], C), parse_floats(c["data.std"], C)
    train_u8, train_y = open_idx(c["data.train"])
    if tuple(train_u8.shape[1:3]) != (S, S):
        sys.exit(f"train_clip.py: images are {tuple(train_u8.shape[1:3])}, model.image_size {S} (resizing is not mirrored)")
    train_x = normalise(train_u8, mean, std, C)
    zs = None
    if c["data.zeroshot"]:
        zx_u8, zy = open_idx(c["data.zeroshot"])
        zs = (normalise(zx_u8, mean, std, C), zy)

    # Every (class, template) caption tokenised once: row class * T + template.
    toks = [tokenize(t.replace("{}", name, 1), L) for name in classes for t in templates]
    cap_ids = torch.tensor([r for r, _ in toks])
    cap_eot = torch.tensor([e for _, e in toks])

    model = CLIP(c)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.param_groups(float(c["train.weight_decay"])), lr=float(c["train.lr"]),
                            betas=(float(c["train.beta1"]), float(c["train.beta2"])), eps=1e-8)
    max_steps, eval_every = int(c["train.max_steps"]), int(c["train.eval_every"])
    log_every, clip = max(1, int(c["train.log_every"])), float(c["train.grad_clip"])
    eval_samples = int(c["train.eval_samples"])
    N = len(train_x)
    per_epoch = N // B
    print(f"train_clip.py: {rest[0]} | clip | {params / 1e6:.2f}M parameters | torch {torch.__version__} | "
          f"{threads} threads | steps 0..{max_steps}", flush=True)

    def evaluate(step, loss):
        out = {"step": step, "train_loss": loss, "elapsed_s": time.time() - t0}
        if zs is not None:
            out["zeroshot_top1"] = zero_shot(model, zs[0], zs[1], classes, templates, L, B, eval_samples)
        print(json.dumps(out), flush=True)
        return out

    t0 = time.time()
    t_log, n_log = time.time(), 0
    order, last = None, {}
    model.train()
    for step in range(max_steps):
        k = step % per_epoch
        if k == 0:
            order = torch.randperm(N)
        idx = order[k * B:(k + 1) * B]
        rows = train_y[idx] * len(templates) + torch.randint(0, len(templates), (B,))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c)
        loss, logits = model.loss(train_x[idx], cap_ids[rows], cap_eot[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item() if clip > 0 else float("nan")
        opt.step()
        n_log += B
        done = step + 1
        if done % log_every == 0 or done == max_steps:
            with torch.no_grad():
                acc = (logits.argmax(1) == torch.arange(B)).float().mean().item()
            now = time.time()
            print(f"step {done:6d}/{max_steps} | loss {loss.item():.4f} | lr {lr_at(step, c):.2e} | "
                  f"grad_norm {gnorm:.3f} | acc_i2t {acc:.3f} | scale {model.logit_scale.exp().item():.2f} | "
                  f"{n_log / (now - t_log):.1f} img/s", flush=True)
            t_log, n_log = now, 0
        if (eval_every > 0 and done % eval_every == 0) or done == max_steps:
            last = evaluate(done, loss.item())
    final = {"final": True, "steps": max_steps, "params": params, "threads": threads,
             "elapsed_s": time.time() - t0, "peer": "pytorch " + torch.__version__}
    final.update({k: v for k, v in last.items() if k not in ("step", "elapsed_s")})
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main()

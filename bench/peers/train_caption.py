#!/usr/bin/env python3
"""PyTorch peer of `fm train` for captioning recipes ([task] kind = caption,
experiments/caption_tuxpaint.ini): trains the same CaptionModel
(tasks/src/caption_model.cpp) with the same next-token loss, optimizer and
schedule (tasks/image/caption_task.cpp, libfm/train), then decodes the
held-out images with the same beam search (tasks/src/decoding.cpp) and scores
them with pycocoevalcap's Bleu, Rouge and Cider on libfm's normalised
captions (tasks/src/caption_metrics.cpp), so BLEU-4 and CIDEr-D of the two
can be compared.

Same as libfm:
- model (layouts cross and single; tests/fixtures/make_caption_fixtures.py's
  CaptionModel with libfm's parameter names: it loads that script's
  caption_cross and caption_single fixtures strictly and gives their logits
  to 2e-7): patch Linear over patchify's (py, px, c) order (torch's default
  init, as libfm's Linear), learned
  positions N(0, width^-0.5) (patch_embed.pos); token embedding N(0, 0.02),
  text positions N(0, 0.01), tied head (logits = h @ token_embedding^T).
  cross: ViT encoder `visual` (bidirectional pre-norm blocks, final norm) and
  a causal decoder whose blocks cross-attend to every image token (q [d, d],
  kv [2d, vision_width], rows k | v). single: one Transformer `core` over
  [image tokens][text] under the prefix-causal mask. Blocks: LayerNorm eps
  1e-5, exact GELU, 4x MLP, biases. Init nn::init_gpt2 on each Transformer:
  weights N(0, 0.02), residual projections (names ending proj.weight: attn,
  cross and mlp) N(0, 0.02 / sqrt(2 n_layer)), zero biases, norms 1.
- batches (decoder_batch): captions are UTF-8 bytes (ids 0..255, the byte
  tokenizer of an empty data.tokenizer) truncated to context_length - 1, then
  <|endoftext|> (256), zero padding; inputs = [256 as start token] +
  text[:, :L-1], targets = text with the positions after the end-of-text set
  to -100; loss = cross-entropy mean over the counted targets.
- images: decoded to RGB as image::decode (OpenCV there, PIL here): alpha
  dropped, not composited; palettes expanded; grey repeated; 16-bit samples
  to their high byte (equal on every PNG layout of
  tests/fixtures/image_decoded.safetensors), then training:
  torchvision's RandomResizedCrop box (scale (crop_scale_min, 1), ratio
  (3/4, 4/3), libfm's float32 steps), crop, antialiased bilinear resize to
  image_size, flip with probability 1/2 (data.hflip); evaluation: shorter
  side to image_size (torchvision Resize(int)), centre crop. Resizing runs
  uint8 -> f32 -> F.interpolate(bilinear, antialias) -> round half even, the
  float path libfm's image::resize reproduces (equal up to rounding ties;
  equal on tests/fixtures/image_transforms.safetensors' resize_f32 cases,
  as the crop box is on image_rrc.safetensors' draws);
  then x * f32(1/255), (x - mean) / std.
- data order: a shuffled order per epoch, the last partial batch dropped.
- optimizer: AdamW (beta1, beta2), eps 1e-8, weight decay only on Linear
  weights (not on norms, biases, embeddings, patch positions, class token);
  lr (s + 1) / warmup * lr during warmup, then cosine (or linear) to min_lr;
  global grad-norm clipping at train.grad_clip (default 1); grad_accum
  micro-batches; optional EMA (train.ema_decay, diffusers' warmup).
- evaluation (train.eval_samples first images of data.val, 0: all, in
  batches of batch_size): val_loss = the mean over images of each batch's
  loss; captions by beam search (decode.beam, length_penalty,
  no_repeat_ngram, early_stopping, max_tokens 0 = context_length - 1) with a
  KV cache: per step the top 2 x beam candidates over all beams (at the first
  step only beam 0), an end-of-text among the top `beam` becomes a
  hypothesis with score sum(logprob) / (tokens + 1)^length_penalty, the
  others extend the beams; a sequence stops once `beam` hypotheses ended
  (early_stopping), or at max_tokens where its running beams compete. Beam 1
  is greedy. Scores: candidate and references (every caption of the same
  image key) normalised as normalize_caption (ASCII lowercase, PTB's
  punctuation stripped from word ends, clitics split), then pycocoevalcap
  1.2's Bleu(4) (corpus, 'closest'), Rouge (ROUGE-L) and Cider (CIDEr-D);
  its PTBTokenizer (Java) is not used.
Not the same: random numbers (init, data order, crop boxes, flips) come from
torch's and numpy's generators, so curves and scores agree statistically, not
bit for bit. PNGs are decoded once at start and kept as uint8 in memory;
crops, resizes and flips run in the training thread (libfm decodes and
augments in data.workers loader threads), so img/s counts that work too.
Not mirrored (refused): model.coca, model.image_encoder, data.tokenizer
files, decode.sample, non-folder data sources; eval.checker's exact-match
figures are not computed.

usage: python3 bench/peers/train_caption.py --recipe experiments/caption_tuxpaint.ini
           [--steps N] [--threads T] [--seed S] [--out results.json] [--section.key=value ...]
  train (default): a header and progress lines on stderr (every train.log_every steps; a JSON line per
    evaluation every train.eval_every steps), then one JSON line on stdout (and in --out):
    {"final": true, "steps", "params", "val_loss", "bleu1".."bleu4", "rouge_l", "cider_d", "img_per_s",
     "train_loss", "captions": [{"key", "generated", "reference"} for the first 10 val images], ...}.
    --steps N sets train.max_steps (if N <= train.warmup_steps, the warmup becomes N // 5, as libfm refuses
    a decay without steps after the warmup; the JSON says which warmup ran).
  --bench [--steps N]: as `fm bench train` (CaptionTask::bench_step): synthetic batches (images ~ N(0, 1),
    ids uniform over the vocabulary, end-of-text at L - 1), forward + loss + backward + AdamW (no
    clipping or schedule), one warm-up step, the median of N (default 10); one JSON line
    {samples_per_s, step_s, params, gflops, threads, ...}.
"""
import argparse
import configparser
import copy
import csv
import json
import math
import os
import resource
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

EOT = 256    # <|endoftext|> after the 256 bytes
VOCAB = 257
IGNORE = -100
NEG_INF = float("-inf")
CAPTIONS_SHOWN = 10

# Defaults of the keys a recipe may leave out (libfm/train/src/recipe.cpp, tasks/image/caption_task.cpp,
# tasks/image/image_text_data.cpp declare_image_data_keys).
DEFAULTS = {
    "task.kind": "lm",
    "model.layout": "cross", "model.image_size": "32", "model.patch_size": "4", "model.channels": "3",
    "model.vision_width": "128", "model.vision_layers": "4", "model.vision_heads": "4", "model.cls_token": "false",
    "model.image_encoder": "", "model.freeze_image_encoder": "false", "model.vocab_size": "0",
    "model.context_length": "32", "model.text_width": "128", "model.text_layers": "4", "model.text_heads": "4",
    "model.coca": "false", "model.unimodal_layers": "2", "model.embed_dim": "128",
    "decode.beam": "3", "decode.max_tokens": "0", "decode.length_penalty": "1.0", "decode.no_repeat_ngram": "0",
    "decode.early_stopping": "true", "decode.sample": "false",
    "train.batch_size": "8", "train.grad_accum": "1", "train.max_steps": "1000", "train.lr": "1e-3",
    "train.min_lr": "1e-4", "train.warmup_steps": "100", "train.schedule": "cosine", "train.weight_decay": "0.1",
    "train.beta1": "0.9", "train.beta2": "0.99", "train.grad_clip": "1.0", "train.ema_decay": "0",
    "train.ema_warmup": "true", "train.eval_every": "250", "train.log_every": "10", "train.eval_samples": "1000",
    "train.seed": "1337",
    "data.train": "", "data.val": "", "data.tokenizer": "", "data.random_crop": "false",
    "data.crop_scale_min": "0.35", "data.hflip": "false", "data.mean": "0.5", "data.std": "0.5",
    "eval.checker": "",
}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def parse_args(argv):
    class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    p.add_argument("--recipe", default="experiments/caption_tuxpaint.ini")
    p.add_argument("--steps", type=int, default=None, help="train: train.max_steps; --bench: timed steps (10)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="train.seed")
    p.add_argument("--out", default="", help="also write the final JSON line to this file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bench", action="store_true", help="time training steps on synthetic batches")
    a, rest = p.parse_known_args(argv)
    for o in rest:
        if not (o.startswith("--") and "=" in o and "." in o.split("=", 1)[0]):
            p.error(f"unknown argument '{o}' (recipe overrides are --section.key=value)")
    return a, rest


def read_config(path, overrides):
    if not os.path.exists(path):
        sys.exit(f"train_caption.py: no recipe '{path}'")
    cp = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
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
    if c["task.kind"] != "caption":
        sys.exit(f"train_caption.py: the recipe's task.kind is '{c['task.kind']}', not caption")
    if c["model.layout"] not in ("cross", "single"):
        sys.exit(f"train_caption.py: model.layout must be cross or single, got '{c['model.layout']}'")
    if truthy(c["model.coca"]):
        sys.exit("train_caption.py: model.coca is not mirrored")
    if c["model.image_encoder"]:
        sys.exit("train_caption.py: model.image_encoder (a CLIP run's image tower) is not mirrored")
    if c["data.tokenizer"]:
        sys.exit("train_caption.py: only the byte tokenizer (data.tokenizer empty) is mirrored")
    if int(c["model.vocab_size"]) not in (0, VOCAB):
        sys.exit("train_caption.py: model.vocab_size must be 0 or 257 with the byte tokenizer")
    if truthy(c["decode.sample"]):
        sys.exit("train_caption.py: decode.sample is not mirrored (beam search and greedy are)")
    if int(c["model.channels"]) not in (1, 3):
        sys.exit("train_caption.py: model.channels must be 1 or 3")
    if c["eval.checker"]:
        log(f"train_caption.py: eval.checker = {c['eval.checker']}: exact-match figures are not computed here")


# ---------------------------------------------------------------- captions

def tokenize(caption, L):
    """tokenize_caption with the byte tokenizer: ids truncated to L - 1, end-of-text, zero padding."""
    ids = list(caption.encode("utf-8"))[:L - 1]
    return ids + [EOT] + [0] * (L - 1 - len(ids)), len(ids)


def detokenize(tokens, errors):
    return bytes(t for t in tokens if t < 256).decode("utf-8", errors)


def decoder_batch(text, eot):
    """caption_task.cpp decoder_batch: inputs = [start] + text[:, :L-1]; targets = text, -100 after the end-of-text."""
    B, L = text.shape
    inputs = torch.cat([torch.full((B, 1), EOT, dtype=torch.int64, device=text.device), text[:, :L - 1]], 1)
    pos = torch.arange(L, device=text.device).unsqueeze(0)
    targets = text.masked_fill(pos > eot.unsqueeze(1), IGNORE)
    return inputs, targets


_PY_SPACE = set(" \t\n\v\f\r\x1c\x1d\x1e\x1f")  # Python's str.split() on ASCII
_DROPPED = set("'\"`(){}.?!,:;-")             # PTBTokenizer's PUNCTUATIONS as characters
_CLITICS = ("n't", "'s", "'re", "'ll", "'ve", "'m", "'d")
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def split_words(s):
    words, cur = [], []
    for ch in s:
        if ch in _PY_SPACE:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def normalize_caption(s):
    """caption_metrics.cpp normalize_caption."""
    out = []
    for word in split_words(s):
        word = word.translate(_ASCII_LOWER)
        b, e = 0, len(word)
        while b < e and word[b] in _DROPPED:
            b += 1
        while e > b and word[e - 1] in _DROPPED:
            e -= 1
        core = word[b:e]
        cut = len(core)
        for c in _CLITICS:
            if len(core) > len(c) and core.endswith(c):
                cut = len(core) - len(c)
                break
        out += [w for w in (core[:cut], core[cut:]) if w]
    return " ".join(out)


# ---------------------------------------------------------------- data

def find_caption_file(spec):
    if spec.startswith("idx:") or spec.endswith(".tar") or "{" in spec:
        sys.exit(f"train_caption.py: '{spec}': only caption folders and files (JSONL, TSV, CSV) are mirrored")
    if not os.path.isdir(spec):
        if not os.path.exists(spec):
            sys.exit(f"train_caption.py: no such file or folder '{spec}' "
                     "(tools/prepare-data experiments/caption_tuxpaint.ini)")
        return spec
    for name in ("captions.jsonl", "captions.tsv", "captions.csv"):
        if os.path.exists(os.path.join(spec, name)):
            return os.path.join(spec, name)
    sys.exit(f"train_caption.py: folder '{spec}' holds none of captions.jsonl, captions.tsv, captions.csv")


def decode_rgb(path):
    """image::decode: RGB with alpha dropped (not composited), palettes expanded, grey repeated, 16-bit samples
    to their high byte: PIL's convert("RGB"), except for 16-bit grey, which PIL clips and libfm shifts."""
    im = Image.open(path)
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        g = (np.array(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2))
    return im.convert("RGB")


class CaptionFolder:
    """data::open_caption_folder: rows (image, caption) of a JSONL (file, caption) or TSV/CSV (filepath, title)
    file; images relative to its folder unless absolute; rows without an image file skipped. Every image is
    decoded once here and kept as uint8 HWC."""

    def __init__(self, spec, channels):
        path = find_caption_file(spec)
        ext = os.path.splitext(path)[1].lower()
        rows = []
        if ext in (".jsonl", ".json"):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        rows.append((r["file"], r["caption"]))
        else:
            with open(path, encoding="utf-8-sig", newline="") as f:
                for r in csv.DictReader(f, delimiter="\t" if ext == ".tsv" else ","):
                    rows.append((r["filepath"], r["title"]))
        root = os.path.dirname(path)
        self.files, self.keys, self.captions, self.images = [], [], [], []
        skipped = 0
        for image, caption in rows:
            full = image if os.path.isabs(image) else os.path.join(root, image)
            if not image or not os.path.isfile(full):
                skipped += 1
                if skipped <= 5:
                    log(f"train_caption.py: {path}: no image file '{full}', skipped")
                continue
            self.files.append(full)
            self.keys.append(os.path.splitext(os.path.normpath(image))[0])
            self.captions.append(caption)
            rgb = decode_rgb(full)
            img = rgb if channels == 3 else rgb.convert("L")  # ITU-R 601-2, as libfm's to_gray
            self.images.append(np.array(img, dtype=np.uint8).reshape(img.size[1], img.size[0], channels))
        self.path, self.skipped = path, skipped

    def __len__(self):
        return len(self.files)


def resize(img, height, width):
    """image::resize (antialiased bilinear, align_corners False) through torch's float path."""
    if img.shape[0] == height and img.shape[1] == width:
        return img
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float()
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return y[0].round().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def crop(img, top, left, height, width):
    """image::crop: zero outside the image."""
    out = np.zeros((height, width, img.shape[2]), dtype=np.uint8)
    y0, y1 = max(0, -top), min(height, img.shape[0] - top)
    x0, x1 = max(0, -left), min(width, img.shape[1] - left)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = img[top + y0:top + y1, left + x0:left + x1]
    return out


def center_crop(img, height, width):
    def offset(size, c):
        return -((c - size) // 2) if c > size else int(round((size - c) / 2.0))
    return crop(img, offset(img.shape[0], height), offset(img.shape[1], width), height, width)


def resize_shorter(img, size):
    h, w = img.shape[:2]
    other = int(float(size * max(h, w)) / float(min(h, w)))
    return resize(img, other, size) if w <= h else resize(img, size, other)


def random_resized_crop_box(H, W, uniform, scale_lo, scale_hi=1.0, ratio_lo=3.0 / 4, ratio_hi=4.0 / 3):
    """image::random_resized_crop_box (torchvision's get_params with libfm's float32 steps)."""
    area = float(H) * W
    log_lo, log_hi = float(np.log(np.float32(ratio_lo))), float(np.log(np.float32(ratio_hi)))
    draw_f32 = lambda lo, hi: np.float32(lo + (hi - lo) * uniform())
    randint = lambda n: min(int(math.floor(uniform() * n)), n - 1)
    for _ in range(10):
        target_area = area * float(draw_f32(scale_lo, scale_hi))
        aspect = float(np.exp(draw_f32(log_lo, log_hi)))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= W and 0 < h <= H:
            top = randint(H - h + 1)
            left = randint(W - w + 1)
            return top, left, h, w
    in_ratio = W / H
    w, h = W, H
    if in_ratio < ratio_lo:
        h = round(w / ratio_lo)
    elif in_ratio > ratio_hi:
        w = round(h * ratio_hi)
    return (H - h) // 2, (W - w) // 2, h, w


class ImagePipeline:
    """ImagePipeline (image_text_data.cpp): crop or resize to size, maybe flip, normalise."""

    def __init__(self, c, train):
        self.size, self.channels = int(c["model.image_size"]), int(c["model.channels"])
        self.random_crop = train and truthy(c["data.random_crop"])
        self.hflip = train and truthy(c["data.hflip"])
        self.scale_min = float(c["data.crop_scale_min"])

        def floats(key):
            v = [float(s) for s in c[key].split(",") if s.strip()]
            if len(v) not in (1, self.channels):
                sys.exit(f"train_caption.py: {key} needs 1 or {self.channels} values, got {len(v)}")
            return v * self.channels if len(v) == 1 else v
        self.mean = torch.tensor(floats("data.mean"), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(floats("data.std"), dtype=torch.float32).view(-1, 1, 1)
        self.inv255 = torch.tensor(1.0 / 255, dtype=torch.float32)

    def __call__(self, img, uniform=None):
        S = self.size
        if self.random_crop:
            top, left, h, w = random_resized_crop_box(img.shape[0], img.shape[1], uniform, self.scale_min)
            img = resize(crop(img, top, left, h, w), S, S)
        elif img.shape[0] != S or img.shape[1] != S:
            img = center_crop(resize_shorter(img, S), S, S)
        if self.hflip and uniform() < 0.5:
            img = img[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() * self.inv255
        return (x - self.mean) / self.std


# ---------------------------------------------------------------- model

def split_heads(x, heads):
    B, T, C = x.shape
    return x.view(B, T, heads, C // heads).transpose(1, 2)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


class SelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.d, self.heads = d, heads
        self.qkv = nn.Linear(d, 3 * d)  # output rows q | k | v
        self.proj = nn.Linear(d, d)

    def forward(self, x, mask=None, causal=False, cache=None):
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).split(self.d, dim=2))
        if cache is not None:
            P = cache["k"].shape[2] if "k" in cache else 0
            if P:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
                T = q.shape[2]  # new queries see the cache and each other causally
                mask = torch.arange(P + T, device=x.device)[None, :] <= (P + torch.arange(T, device=x.device))[:, None]
                causal = False
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.proj(merge_heads(y))


class CrossAttention(nn.Module):
    def __init__(self, d, heads, context_dim):
        super().__init__()
        self.d, self.heads = d, heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(context_dim, 2 * d)  # output rows k | v
        self.proj = nn.Linear(d, d)

    def forward(self, x, context, cache=None):
        if cache is not None and "ck" in cache:
            k, v = cache["ck"], cache["cv"]
        else:
            k, v = (split_heads(t, self.heads) for t in self.kv(context).split(self.d, dim=2))
            if cache is not None:
                cache["ck"], cache["cv"] = k, v
        return self.proj(merge_heads(F.scaled_dot_product_attention(split_heads(self.q(x), self.heads), k, v)))


class MLP(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc = nn.Linear(d, hidden)
        self.proj = nn.Linear(hidden, d)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """nn::TransformerBlock, pre-norm, with an optional cross-attention sublayer."""

    def __init__(self, d, heads, context_dim=0):
        super().__init__()
        if heads <= 0 or d % heads:
            sys.exit(f"train_caption.py: width {d} must be a positive multiple of heads {heads}")
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = SelfAttention(d, heads)
        self.cross = None
        if context_dim > 0:
            self.norm_cross = nn.LayerNorm(d, eps=1e-5)
            self.cross = CrossAttention(d, heads, context_dim)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = MLP(d, 4 * d)

    def forward(self, x, context=None, mask=None, causal=False, cache=None):
        x = x + self.attn(self.norm1(x), mask, causal, cache)
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), context, cache)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """nn::Transformer: blocks, final LayerNorm; nn::init_gpt2."""

    def __init__(self, width, layers, heads, context_dim=0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, context_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(width, eps=1e-5)
        residual_std = 0.02 / math.sqrt(2 * layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, 0.0, residual_std if name.endswith("proj.weight") else 0.02)
                elif name.endswith(".bias") and "norm" not in name:
                    nn.init.zeros_(p)

    def forward(self, x, context=None, mask=None, causal=False, caches=None):
        for i, b in enumerate(self.blocks):
            x = b(x, context, mask, causal, caches[i] if caches is not None else None)
        return self.norm(x)


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, channels, d, cls_token):
        super().__init__()
        if patch_size <= 0 or image_size % patch_size:
            sys.exit(f"train_caption.py: image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.p = patch_size
        n = (image_size // patch_size) ** 2 + (1 if cls_token else 0)
        self.proj = nn.Linear(patch_size * patch_size * channels, d)  # torch's default init, as libfm's Linear
        self.pos = nn.Parameter(torch.randn(n, d) / math.sqrt(d))
        self.cls = nn.Parameter(torch.randn(d) / math.sqrt(d)) if cls_token else None

    def forward(self, images):
        B, C, H, W = images.shape
        p = self.p
        x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, p * p * C)
        x = self.proj(x)
        if self.cls is not None:
            x = torch.cat([self.cls.view(1, 1, -1).expand(B, 1, -1), x], 1)
        return x + self.pos


def prefix_causal_mask(n_image, n_text, device):
    n = n_image + n_text
    q = torch.arange(n, device=device)[:, None]
    k = torch.arange(n, device=device)[None, :]
    return (k < n_image) | (k <= q)


class CaptionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        g = lambda k: int(c[k])
        self.single = c["model.layout"] == "single"
        self.context_length, tw = g("model.context_length"), g("model.text_width")
        vw = tw if self.single else g("model.vision_width")
        self.patch_embed = PatchEmbedding(g("model.image_size"), g("model.patch_size"), g("model.channels"), vw,
                                          truthy(c["model.cls_token"]))
        self.image_tokens = self.patch_embed.pos.shape[0]
        self.token_embedding = nn.Embedding(VOCAB, tw)
        self.positional_embedding = nn.Embedding(self.context_length, tw)
        if self.single:
            self.core = Transformer(tw, g("model.text_layers"), g("model.text_heads"))
        else:
            self.visual = Transformer(vw, g("model.vision_layers"), g("model.vision_heads"))
            self.decoder = Transformer(tw, g("model.text_layers"), g("model.text_heads"), context_dim=vw)
        with torch.no_grad():
            nn.init.normal_(self.token_embedding.weight, 0.0, 0.02)
            nn.init.normal_(self.positional_embedding.weight, 0.0, 0.01)

    def embed_text(self, ids, start=0):
        T = ids.shape[1]
        if start + T > self.context_length:
            sys.exit(f"train_caption.py: {start + T} caption positions exceed context_length {self.context_length}")
        pos = torch.arange(start, start + T, device=ids.device)
        return self.token_embedding(ids) + self.positional_embedding(pos)

    def head(self, h):
        return h @ self.token_embedding.weight.T

    def encode_image(self, images):
        patches = self.patch_embed(images)
        return patches if self.single else self.visual(patches)

    def forward(self, images, ids):
        image = self.encode_image(images)
        if self.single:
            N, T = image.shape[1], ids.shape[1]
            h = self.core(torch.cat([image, self.embed_text(ids)], 1), mask=prefix_causal_mask(N, T, ids.device))
            return self.head(h[:, N:])
        return self.head(self.decoder(self.embed_text(ids), context=image, causal=True))

    def new_caches(self):
        return [{} for _ in (self.core if self.single else self.decoder).blocks]

    def step_logits(self, image, ids, caches):
        """CaptionModel::logits with caches: the next tokens of every row given what the caches hold."""
        cached = caches[0]["k"].shape[2] if "k" in caches[0] else 0
        if self.single:
            N, T = self.image_tokens, ids.shape[1]
            if cached == 0:
                x = torch.cat([image, self.embed_text(ids, 0)], 1)
                return self.head(self.core(x, mask=prefix_causal_mask(N, T, ids.device), caches=caches)[:, N:])
            return self.head(self.core(self.embed_text(ids, cached - N), causal=True, caches=caches))
        return self.head(self.decoder(self.embed_text(ids, cached), context=image, causal=True, caches=caches))

    def param_groups(self, weight_decay):
        # libfm's kNoDecay: biases, norms, embeddings, patch positions, class token; Linear weights decay.
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            is_linear_weight = (p.dim() == 2 and name.endswith(".weight")
                                and not name.startswith(("token_embedding.", "positional_embedding.")))
            (decay if is_linear_weight else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def flops_per_sample(model, c):
    """CaptionTask::flops_per_sample."""
    n_img, L = float(model.image_tokens), float(c["model.context_length"])
    V, tw, tl = float(VOCAB), float(c["model.text_width"]), float(c["model.text_layers"])
    count = lambda m: float(sum(p.numel() for p in m.parameters()))
    embed = count(model.patch_embed)
    if model.single:
        T = n_img + L
        return 6.0 * (embed * n_img + count(model.core) * T + V * tw * L) + 12.0 * tl * tw * T * T
    vw, vl = float(c["model.vision_width"]), float(c["model.vision_layers"])
    return (6.0 * (embed + count(model.visual)) * n_img + 6.0 * count(model.decoder) * L + 6.0 * V * tw * L
            + 12.0 * (vl * vw * n_img * n_img + tl * tw * (L * L + L * n_img)))


# ---------------------------------------------------------------- decoding

class Hypothesis:
    __slots__ = ("tokens", "sum")

    def __init__(self, tokens, total):
        self.tokens, self.sum = tokens, total


def penalised(total, length, penalty):
    return total / math.pow(float(length), penalty)


def ban_repeats(tokens, n, lp):
    """Sets to -inf every token that would repeat an n-gram of `tokens`."""
    if n <= 0 or len(tokens) + 1 < n:
        return
    tail = tokens[len(tokens) - (n - 1):] if n > 1 else []
    for s in range(len(tokens) - n + 1):
        if tokens[s:s + n - 1] == tail:
            lp[tokens[s + n - 1]] = NEG_INF


class CaptionSource:
    """CaptionTokenSource: rows b * beam + j; the image encoded once, then a KV cache."""

    def __init__(self, model, images, beam):
        image = model.encode_image(images)
        self.model, self.image = model, image.repeat_interleave(beam, 0) if beam > 1 else image
        self.caches = model.new_caches()

    def next(self, tokens):
        ids = torch.tensor(tokens, dtype=torch.int64, device=self.image.device).view(-1, 1)
        logits = self.model.step_logits(self.image, ids, self.caches)[:, 0]
        # log_probs: row - (max + log sum exp(row - max)) in double, from f32 logits.
        return torch.log_softmax(logits.float().double(), dim=-1).cpu().numpy()

    def select(self, rows):
        if rows == list(range(len(rows))):
            return
        idx = torch.tensor(rows, dtype=torch.int64, device=self.image.device)
        for cache in self.caches:
            for k in cache:
                cache[k] = cache[k].index_select(0, idx)


def greedy(source, batch, start, stop, o):
    tokens = [[] for _ in range(batch)]
    done, feed = [False] * batch, [start] * batch
    for step in range(o["max_tokens"]):
        lp_all = source.next(feed)
        for b in range(batch):
            if done[b]:
                continue
            lp = lp_all[b].copy()
            ban_repeats(tokens[b], o["no_repeat_ngram"], lp)
            t = int(np.argmax(lp))
            feed[b] = t
            stopped = t == stop
            if not stopped:
                tokens[b].append(t)
            done[b] = stopped or step + 1 == o["max_tokens"]
        if all(done):
            break
    return tokens


def beam_search(source, batch, start, stop, o):
    """decoding.cpp beam_search."""
    W, pen = o["beam"], o["length_penalty"]
    beams = [[Hypothesis([], 0.0) for _ in range(W)] for _ in range(batch)]
    finished = [[] for _ in range(batch)]  # (score, tokens), best first, at most W

    def add(f, score, tokens):
        f.append((score, tokens))
        f.sort(key=lambda e: -e[0])
        if len(f) > W:
            f.pop()

    done = [False] * batch
    feed = [start] * (batch * W)
    for step in range(o["max_tokens"]):
        lp_all = source.next(feed)
        V = lp_all.shape[1]
        rows = list(range(batch * W))
        for b in range(batch):
            if done[b]:
                continue
            bb = beams[b]
            scores, beam_of = [], []
            for j in range(1 if step == 0 else W):
                if bb[j].sum == NEG_INF:  # a filler beam
                    continue
                lp = lp_all[b * W + j]
                if o["no_repeat_ngram"] > 0:
                    lp = lp.copy()
                    ban_repeats(bb[j].tokens, o["no_repeat_ngram"], lp)
                scores.append(bb[j].sum + lp)
                beam_of.append(j)
            flat = np.concatenate(scores)
            valid = np.flatnonzero(flat > NEG_INF)
            order = valid[np.argsort(-flat[valid], kind="stable")[:2 * W]]
            nxt = []
            for rank, c in enumerate(order):
                if len(nxt) >= W:
                    break
                total, j, t = float(flat[c]), beam_of[c // V], int(c % V)
                if t == stop:  # an ending among the best W candidates becomes a hypothesis
                    if rank < W:
                        add(finished[b], penalised(total, len(bb[j].tokens) + 1, pen), bb[j].tokens)
                    continue
                rows[b * W + len(nxt)] = b * W + j
                nxt.append(Hypothesis(bb[j].tokens + [t], total))
            if not nxt:  # every continuation banned or ended
                done[b] = True
                continue
            while len(nxt) < W:  # too few candidates: repeat the last, never chosen
                rows[b * W + len(nxt)] = rows[b * W + len(nxt) - 1]
                nxt.append(Hypothesis(list(nxt[-1].tokens), NEG_INF))
            beams[b] = nxt
            f = finished[b]
            if len(f) >= W:
                done[b] = o["early_stopping"] or f[-1][0] >= penalised(nxt[0].sum, len(nxt[0].tokens), pen)
        feed = [h.tokens[-1] if h.tokens else start for bb in beams for h in bb]
        if all(done):
            break
        source.select(rows)
    out = []
    for b in range(batch):
        f = finished[b]
        if not done[b]:  # out of tokens: the running beams compete with the ended ones
            for h in beams[b]:
                if h.sum > NEG_INF:
                    add(f, penalised(h.sum, len(h.tokens), pen), h.tokens)
        out.append(f[0][1] if f else [])
    return out


@torch.no_grad()
def caption_images(model, images, o):
    source = CaptionSource(model, images, o["beam"])
    run = greedy if o["beam"] == 1 else beam_search
    return run(source, images.shape[0], EOT, EOT, o)


def decode_options(c):
    L = int(c["model.context_length"])
    o = {"beam": int(c["decode.beam"]), "max_tokens": int(c["decode.max_tokens"]) or L - 1,
         "length_penalty": float(c["decode.length_penalty"]), "no_repeat_ngram": int(c["decode.no_repeat_ngram"]),
         "early_stopping": truthy(c["decode.early_stopping"])}
    if o["beam"] < 1:
        sys.exit(f"train_caption.py: decode.beam must be at least 1, got {o['beam']}")
    if not 1 <= o["max_tokens"] <= L - 1:
        sys.exit(f"train_caption.py: decode.max_tokens must be 1 to context_length - 1 = {L - 1}")
    return o


# ---------------------------------------------------------------- evaluation

def caption_scores(examples):
    """Corpus BLEU-1..4, ROUGE-L, CIDEr-D with pycocoevalcap's scorers on normalised captions."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        sys.exit("train_caption.py: the scores need pycocoevalcap (pip install pycocoevalcap)")
    gts = {i: refs for i, (_, refs) in enumerate(examples)}
    res = {i: [cand] for i, (cand, _) in enumerate(examples)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu{k + 1}": float(bleu[k]) for k in range(4)}
    out.update({"rouge_l": float(rouge), "cider_d": float(cider)})
    return out


@torch.no_grad()
def evaluate(model, val, c, device):
    """CaptionTask::evaluate: validation loss and decoded captions over the first eval_samples val images."""
    model.eval()
    B, limit = int(c["train.batch_size"]), int(c["train.eval_samples"])
    n = min(limit, len(val["set"])) if limit > 0 else len(val["set"])
    o = decode_options(c)
    loss_sum, generated = 0.0, []
    for s in range(0, n, B):
        idx = slice(s, min(s + B, n))
        images = val["images"][idx].to(device)
        inputs, targets = decoder_batch(val["text"][idx].to(device), val["eot"][idx].to(device))
        logits = model(images, inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
        loss_sum += loss.item() * images.shape[0]
        generated += caption_images(model, images, o)
    model.train()
    if n == 0:
        return {}
    out = {"val_loss": loss_sum / n}
    # caption_figures: one example per image key, references every caption of that key among those evaluated.
    example_of, examples = {}, []
    for i in range(n):
        key = val["set"].keys[i]
        if key not in example_of:
            example_of[key] = len(examples)
            examples.append((normalize_caption(detokenize(generated[i], "surrogateescape")), []))
        examples[example_of[key]][1].append(normalize_caption(val["set"].captions[i]))
    out.update(caption_scores(examples))
    out["captions"] = [{"key": val["set"].keys[i], "generated": detokenize(generated[i], "replace"),
                        "reference": val["set"].captions[i]} for i in range(min(CAPTIONS_SHOWN, n))]
    return out


# ---------------------------------------------------------------- modes

def lr_at(step, c):
    """optim::LRSchedule::at."""
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


def make_optimizer(model, c):
    return torch.optim.AdamW(model.param_groups(float(c["train.weight_decay"])), lr=float(c["train.lr"]),
                             betas=(float(c["train.beta1"]), float(c["train.beta2"])), eps=1e-8)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(model, c, a, device, params):
    """train::bench_train with CaptionTask::bench_step's synthetic batch."""
    B, L, S, C = (int(c[k]) for k in ("train.batch_size", "model.context_length", "model.image_size", "model.channels"))
    opt = make_optimizer(model, c)
    images = torch.randn(B, C, S, S).to(device)
    inputs, targets = decoder_batch(torch.randint(0, VOCAB, (B, L)), torch.full((B,), L - 1, dtype=torch.int64))
    inputs, targets = inputs.to(device), targets.to(device)
    model.train()

    def step():
        opt.zero_grad(set_to_none=False)
        logits = model(images, inputs)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=IGNORE)
        loss.backward()
        opt.step()
        loss.item()

    step()  # warm-up
    times = []
    for k in range(a.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        log(f"step {k + 1}/{a.steps}: {times[-1]:.3f} s")
    step_s = sorted(times)[len(times) // 2]
    out = {"peer": "pytorch " + torch.__version__, "kind": "caption", "samples_per_s": B / step_s, "step_s": step_s,
           "params": params, "gflops": B / step_s * flops_per_sample(model, c) / 1e9, "threads": a.threads,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": str(device),
           "precision": "f32"}
    return out


def prepare_split(spec, c, train):
    t0 = time.time()
    s = CaptionFolder(spec, int(c["model.channels"]))
    if len(s) == 0:
        sys.exit(f"train_caption.py: {s.path}: no images")
    L = int(c["model.context_length"])
    toks = [tokenize(cap, L) for cap in s.captions]
    out = {"set": s, "text": torch.tensor([r for r, _ in toks]), "eot": torch.tensor([e for _, e in toks]),
           "decode_s": time.time() - t0}
    if not train:  # evaluation images have no augmentation: prepared once
        pipe = ImagePipeline(c, train=False)
        out["images"] = torch.stack([pipe(img) for img in s.images])
    log(f"train_caption.py: {s.path}: {len(s)} images ({s.skipped} skipped), decoded in {out['decode_s']:.1f} s")
    return out


def train(model, c, a, device, params):
    B, accum = int(c["train.batch_size"]), int(c["train.grad_accum"])
    max_steps, eval_every = int(c["train.max_steps"]), int(c["train.eval_every"])
    log_every, clip = max(1, int(c["train.log_every"])), float(c["train.grad_clip"])
    ema_decay, seed = float(c["train.ema_decay"]), int(c["train.seed"])
    if c["train.schedule"] not in ("cosine", "linear", "constant"):
        sys.exit(f"train_caption.py: train.schedule must be cosine, linear or constant, got '{c['train.schedule']}'")
    if c["train.schedule"] != "constant" and max_steps <= int(c["train.warmup_steps"]):
        sys.exit("train_caption.py: the decay needs train.max_steps > train.warmup_steps (as libfm)")
    if not c["data.train"]:
        sys.exit("train_caption.py: the recipe names no data.train")
    tr = prepare_split(c["data.train"], c, train=True)
    val = prepare_split(c["data.val"], c, train=False) if c["data.val"] else None
    pipe = ImagePipeline(c, train=True)
    N = len(tr["set"])
    per_epoch = N // B
    if per_epoch == 0:
        sys.exit(f"train_caption.py: {N} training images make no batch of {B}")

    opt = make_optimizer(model, c)
    ema = None
    if ema_decay > 0:
        ema = copy.deepcopy(model).eval()
        ema.requires_grad_(False)
    params_live = list(model.parameters())
    params_ema = list(ema.parameters()) if ema is not None else []
    order_gen = torch.Generator().manual_seed(seed)
    aug = np.random.default_rng(seed * 2 + 1)
    uniform = aug.random
    log(f"train_caption.py: {a.recipe} | caption ({c['model.layout']}) | {params / 1e6:.2f}M parameters ({params}) | "
        f"torch {torch.__version__} | {device} | {a.threads} threads | steps 0..{max_steps}")

    def batch(position):
        nonlocal order
        k = position % per_epoch
        if k == 0 or order is None:
            order = torch.randperm(N, generator=order_gen)
        idx = order[k * B:(k + 1) * B].numpy()
        images = torch.stack([pipe(tr["set"].images[i], uniform) for i in idx])
        return images, tr["text"][idx], tr["eot"][idx]

    order, position, last_eval = None, 0, {}
    train_s, t0 = 0.0, time.time()
    t_log, n_log, loss_log, steps_log = 0.0, 0, 0.0, 0
    loss_v = float("nan")
    model.train()
    for step in range(max_steps):
        ts = time.perf_counter()
        lr = lr_at(step, c)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(accum):
            images, text, eot = batch(position)
            position += 1
            inputs, targets = decoder_batch(text.to(device), eot.to(device))
            logits = model(images.to(device), inputs)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=IGNORE)
            loss_sum += loss.item()
            (loss / accum if accum > 1 else loss).backward()
        loss_v = loss_sum / accum
        if not math.isfinite(loss_v):
            sys.exit(f"train_caption.py: training diverged at step {step + 1}: loss is {loss_v}")
        gnorm = torch.nn.utils.clip_grad_norm_(params_live, clip).item() if clip > 0 else float("nan")
        opt.step()
        if ema is not None:  # optim::EMA::update
            decay = min(ema_decay, (1.0 + step) / (10.0 + step)) if truthy(c["train.ema_warmup"]) else ema_decay
            with torch.no_grad():
                torch._foreach_lerp_(params_ema, params_live, 1.0 - decay)
        sync(device)
        dt = time.perf_counter() - ts
        train_s += dt
        t_log += dt
        n_log += B * accum
        loss_log += loss_v
        steps_log += 1
        done = step + 1
        if done % log_every == 0 or done == max_steps:
            log(f"step {done:6d}/{max_steps} | loss {loss_v:.4f} (avg {loss_log / steps_log:.4f}) | lr {lr:.2e} | "
                f"grad_norm {gnorm:.3f} | {n_log / t_log:.1f} img/s")
            t_log, n_log, loss_log, steps_log = 0.0, 0, 0.0, 0
        if val is not None and ((eval_every > 0 and done % eval_every == 0) or done == max_steps):
            te = time.time()
            last_eval = evaluate(ema if ema is not None else model, val, c, device)
            last_eval["eval_s"] = time.time() - te
            shown = {k: v for k, v in last_eval.items() if k != "captions"}
            log(json.dumps({"step": done, **shown, "train_loss": loss_v}))
    out = {"final": True, "peer": "pytorch " + torch.__version__, "kind": "caption", "recipe": a.recipe,
           "layout": c["model.layout"], "steps": max_steps, "warmup_steps": int(c["train.warmup_steps"]),
           "seed": seed, "params": params, "threads": a.threads, "device": str(device), "train_loss": loss_v,
           "img_per_s": max_steps * B * accum / train_s, "train_s": train_s, "elapsed_s": time.time() - t0,
           "decode_s": tr["decode_s"] + (val["decode_s"] if val else 0.0), "train_images": N,
           "val_images": len(val["set"]) if val else 0}
    out.update(last_eval)
    return out


def main():
    # P-mode PNGs with a tRNS chunk: convert("RGB") takes the palette colours and drops the transparency, which is
    # what libfm's decoder does too (alpha dropped, not composited).
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    a, overrides = parse_args(sys.argv[1:])
    c = read_config(a.recipe, overrides)
    check_supported(c)
    if a.seed is not None:
        c["train.seed"] = str(a.seed)
    if a.bench:
        a.steps = 10 if a.steps is None else a.steps
    elif a.steps is not None:
        c["train.max_steps"] = str(a.steps)
        warm = int(c["train.warmup_steps"])
        if c["train.schedule"] != "constant" and a.steps <= warm:
            c["train.warmup_steps"] = str(a.steps // 5)
            log(f"train_caption.py: --steps {a.steps} <= train.warmup_steps {warm}: warmup cut to {a.steps // 5}")
    torch.set_num_threads(a.threads)
    # As gpt_step.py: PyTorch's CPU kernels slow down sharply on denormals; run the peer in its fastest setting.
    torch.set_flush_denormal(True)
    device = torch.device(a.device)
    torch.manual_seed(int(c["train.seed"]))
    model = CaptionModel(c).to(device)
    params = sum(p.numel() for p in model.parameters())
    out = bench(model, c, a, device, params) if a.bench else train(model, c, a, device, params)
    line = json.dumps(out)
    print(line, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()

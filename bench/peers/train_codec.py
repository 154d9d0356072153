#!/usr/bin/env python3
"""PyTorch peer of `fm train` for codec recipes ([task] kind = codec,
experiments/codec_melodies.ini): trains the same codec (tasks/src/codec_model.cpp)
with the same losses, optimizer and schedule (tasks/audio/codec_task.cpp,
libfm/train), then reports the same held-out figures (mel_distance, si_snr,
val_l1, codebook usage and perplexity), so step speed and reconstruction
quality can be put side by side.

Same as libfm:
- model: the SEANet encoder and decoder of tests/fixtures/make_codec_fixtures.py
  (imported: the modules the parity fixtures test libfm against, with libfm's
  parameter names and PyTorch's default init), and residual vector
  quantisation as fm/audio/rvq.h: EMA codebooks (decay, Laplace smoothing
  eps 1e-5), k-means initialisation on the first batch (kmeans_iters Lloyd
  rounds from distinct random frames), dead-code restarts (codes whose EMA
  cluster size was below the threshold before the step get a random frame of
  the batch after the EMA step, embed_avg = frame * smoothed size), the
  commitment loss mse(q.detach(), residual) per layer, their mean, and one
  straight-through estimate for the whole stack.
- loss: l1_weight * L1(waveform) + mel_weight * multi-scale log-mel L1 +
  commitment_weight * commitment (fm/tasks/codec_losses.h): windows 2^i for
  i in mel_min_log2..mel_max_log2, hop n / 4, periodic Hann, centred with
  zero padding, power spectra, min(n_mels, n / 4) HTK triangles
  (torchaudio's melscale_fbanks, written out here), log10(mel + floor).
- data: the captions.jsonl folder's clips, mono, random crops of
  data.segment_seconds (rounded up to the hop) for training; the first
  data.eval_seconds of the first train.eval_samples val clips for evaluation.
- optimizer: AdamW (beta1, beta2, eps 1e-8), weight decay on weight_v and
  plain weights only; lr warmup then cosine (or linear) to min_lr; global
  grad-norm clipping at train.grad_clip.
- figures: mel_distance (the distance above with the defaults: windows 64 to
  2048, 64 mels, floor 1e-5), si_snr (dB, zero-mean, eps 1e-8), val_l1,
  val_mel (with the loss's keys), codebook_usage (mean fraction of codes
  used), codebook_usage_min, codebook_perplexity (mean exp entropy).
Not the same: random numbers (init, crops, data order, k-means starts,
restarts) come from torch's and numpy's generators, so figures agree
statistically, not bit for bit. Clips are decoded once at start (soundfile)
and kept in memory; files at another rate than model.sample_rate are refused
(libfm resamples them). grad_accum, EMA weights and bf16 are not mirrored.

usage: python3 bench/peers/train_codec.py --recipe experiments/codec_melodies.ini
           [--steps N] [--threads T] [--seed S] [--out results.json] [--section.key=value ...]
  train (default): progress lines on stderr, a JSON line per evaluation, then one JSON line on stdout
    (and in --out) with the last evaluation's figures, clips_per_s and step_s.
  --bench [--steps N]: as `fm bench train` (CodecTask::bench_step): random batches (0.1 * N(0, 1)),
    forward + loss + backward + AdamW, one warm-up step, the median of N (default 10).
"""
import argparse
import configparser
import json
import math
import os
import resource
import sys
import time

import numpy as np
import soundfile
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "fixtures"))
from make_codec_fixtures import Decoder, Encoder  # noqa: E402

# Defaults of the keys a recipe may leave out (libfm/train/src/recipe.cpp, tasks/audio/codec_task.cpp).
DEFAULTS = {
    "task.kind": "lm",
    "model.sample_rate": "16000", "model.channels": "32", "model.dim": "128", "model.ratios": "2,4,5,8",
    "model.residual_layers": "1", "model.dilation_base": "2", "model.weight_norm": "true",
    "model.n_codebooks": "8", "model.codebook_size": "1024",
    "quantizer.decay": "0.99", "quantizer.kmeans_iters": "10", "quantizer.dead_code_threshold": "2.0",
    "loss.l1_weight": "1.0", "loss.mel_weight": "0.1", "loss.commitment_weight": "1.0", "loss.mel_min_log2": "6",
    "loss.mel_max_log2": "11", "loss.n_mels": "64", "loss.mel_floor": "1e-2",
    "data.train": "", "data.val": "", "data.segment_seconds": "1.0", "data.eval_seconds": "4.0",
    "train.batch_size": "8", "train.grad_accum": "1", "train.max_steps": "1000", "train.lr": "1e-3",
    "train.min_lr": "1e-4", "train.warmup_steps": "100", "train.schedule": "cosine", "train.weight_decay": "0.1",
    "train.beta1": "0.9", "train.beta2": "0.99", "train.grad_clip": "1.0", "train.eval_every": "250",
    "train.log_every": "10", "train.eval_samples": "64", "train.seed": "1337", "train.ema_decay": "0",
}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def parse_args(argv):
    class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    p.add_argument("--recipe", default="experiments/codec_melodies.ini")
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
        sys.exit(f"train_codec.py: no recipe '{path}'")
    cp = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    cp.read(path)
    cfg = dict(DEFAULTS)
    cfg.update({f"{s}.{k}": v.strip() for s in cp.sections() for k, v in cp[s].items()})
    for o in overrides:
        k, v = o[2:].split("=", 1)
        cfg[k] = v
    if cfg["task.kind"] != "codec":
        sys.exit(f"train_codec.py: the recipe's task.kind is '{cfg['task.kind']}', not codec")
    if int(cfg["train.grad_accum"]) != 1 or float(cfg["train.ema_decay"]) > 0:
        sys.exit("train_codec.py: train.grad_accum and train.ema_decay are not mirrored")
    return cfg


def truthy(v):
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def model_options(c):
    return dict(channels=int(c["model.channels"]), dim=int(c["model.dim"]),
                ratios=tuple(int(r) for r in c["model.ratios"].split(",")),
                residual_layers=int(c["model.residual_layers"]), dilation_base=int(c["model.dilation_base"]),
                weight_norm=truthy(c["model.weight_norm"]))


# ---------------------------------------------------------------- quantiser (fm/audio/rvq.h)

def sample_vectors(x, num, gen):
    n = x.shape[0]
    if n >= num:
        idx = torch.randperm(n, generator=gen)[:num]
    else:
        idx = torch.randint(0, n, (num,), generator=gen)
    return x[idx.to(x.device)]


def nearest(x, embed):
    d = x.pow(2).sum(1, keepdim=True) - 2 * x @ embed.t() + embed.pow(2).sum(1).unsqueeze(0)
    return d.argmin(1)


class Codebook:
    def __init__(self, dim, bins, o, gen):
        self.bins, self.o, self.gen = bins, o, gen
        self.inited = False
        self.cluster_size = torch.zeros(bins)
        self.embed = torch.zeros(bins, dim)
        self.embed_avg = torch.zeros(bins, dim)

    def to(self, device):
        for k in ("cluster_size", "embed", "embed_avg"):
            setattr(self, k, getattr(self, k).to(device))

    def kmeans(self, x):
        means = sample_vectors(x, self.bins, self.gen)
        counts = None
        for _ in range(self.o["kmeans_iters"]):
            codes = nearest(x, means)
            counts = torch.bincount(codes, minlength=self.bins)
            sums = torch.zeros_like(means).index_add_(0, codes, x)
            means = torch.where((counts == 0).unsqueeze(1), means, sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype))
        self.embed, self.embed_avg = means.clone(), means.clone()
        self.cluster_size = counts.to(x.dtype)
        self.inited = True

    @torch.no_grad()
    def forward(self, x, training):
        if not self.inited:
            self.kmeans(x)
        codes = nearest(x, self.embed)
        q = self.embed[codes]
        if training:
            self.update(x, codes)
        return q, codes

    def update(self, x, codes):
        decay, eps, bins = self.o["decay"], 1e-5, self.bins
        dead = None
        if self.o["threshold"] > 0:
            mask = self.cluster_size < self.o["threshold"]
            if mask.any():
                dead, frames = mask.unsqueeze(1), sample_vectors(x, bins, self.gen)
        counts = torch.bincount(codes, minlength=bins).to(x.dtype)
        sums = torch.zeros_like(self.embed).index_add_(0, codes, x)
        self.cluster_size = self.cluster_size * decay + counts * (1 - decay)
        self.embed_avg = self.embed_avg * decay + sums * (1 - decay)
        total = self.cluster_size.sum()
        smoothed = ((self.cluster_size + eps) / (total + bins * eps) * total).unsqueeze(1)
        normalized = self.embed_avg / smoothed
        if dead is not None:
            normalized = torch.where(dead, frames, normalized)
            self.embed_avg = torch.where(dead, frames * smoothed, self.embed_avg)
        self.embed = normalized


class ResidualVQ:
    def __init__(self, c, gen):
        dim, k, bins = int(c["model.dim"]), int(c["model.n_codebooks"]), int(c["model.codebook_size"])
        o = dict(decay=float(c["quantizer.decay"]), kmeans_iters=int(c["quantizer.kmeans_iters"]),
                 threshold=float(c["quantizer.dead_code_threshold"]))
        if o["kmeans_iters"] <= 0:
            sys.exit("train_codec.py: quantizer.kmeans_iters = 0 (random codebooks) is not mirrored")
        self.books = [Codebook(dim, bins, o, gen) for _ in range(k)]

    def to(self, device):
        for b in self.books:
            b.to(device)

    def forward(self, z, training):
        B, D, T = z.shape
        residual, out, codes, losses = z, torch.zeros_like(z), [], []
        for book in self.books:
            rows = residual.detach().permute(0, 2, 1).reshape(B * T, D)
            q, c = book.forward(rows, training)
            q = q.view(B, T, D).permute(0, 2, 1)
            losses.append(F.mse_loss(q.detach(), residual) if training else torch.zeros((), device=z.device))
            residual = residual - q
            out = out + q
            codes.append(c.view(B, T))
        if training:
            out = z + (out - z).detach()
        return out, torch.stack(codes, 1), torch.stack(losses).mean()


class Codec(torch.nn.Module):
    def __init__(self, c, gen):
        super().__init__()
        o = model_options(c)
        self.encoder, self.decoder = Encoder(o), Decoder(o)
        self.quantizer = ResidualVQ(c, gen)
        self.hop = math.prod(o["ratios"])

    def forward(self, wave):
        rec_q, codes, commit = self.quantizer.forward(self.encoder(wave), self.training)
        return self.decoder(rec_q)[..., :wave.shape[-1]], codes, commit


# ---------------------------------------------------------------- losses (fm/tasks/codec_losses.h)

def htk_filterbank(sr, n_fft, n_mels):
    """torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0, sr / 2, n_mels, sr, None, 'htk').T"""
    bins = n_fft // 2 + 1
    hz = np.linspace(0, sr / 2, bins)
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    pts = 700.0 * (10 ** (np.linspace(mel(0.0), mel(sr / 2), n_mels + 2) / 2595.0) - 1.0)
    diff = np.diff(pts)
    slopes = pts[None, :] - hz[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    return torch.tensor(np.maximum(0, np.minimum(down, up)).T, dtype=torch.float32)


class MelDistance:
    def __init__(self, sr, min_log2, max_log2, n_mels, floor, device):
        self.scales = []
        for i in range(min_log2, max_log2 + 1):
            n = 2 ** i
            self.scales.append((n, torch.hann_window(n, device=device),
                                htk_filterbank(sr, n, min(n_mels, n // 4)).to(device)))
        self.floor = floor

    def __call__(self, est, ref):
        """[B, 1, T] x 2 -> [B]"""
        total = 0
        for n, window, fb in self.scales:
            def log_mel(x):
                spec = torch.stft(x.squeeze(1), n, n // 4, window=window, center=True, pad_mode="constant",
                                  return_complex=True)
                return torch.log10(fb @ spec.abs().pow(2) + self.floor)
            total = total + (log_mel(est) - log_mel(ref)).abs().mean(dim=(1, 2))
        return total / len(self.scales)


def si_snr(est, ref, eps=1e-8):
    e = est.squeeze(1) - est.squeeze(1).mean(1, keepdim=True)
    r = ref.squeeze(1) - ref.squeeze(1).mean(1, keepdim=True)
    p = r * ((e * r).sum(1, keepdim=True) / (r.pow(2).sum(1, keepdim=True) + eps))
    return 10 * torch.log10((p.pow(2).sum(1) + eps) / ((e - p).pow(2).sum(1) + eps))


# ---------------------------------------------------------------- data, optimizer, loop

def clip_samples(seconds, sr, hop):
    n = math.ceil(seconds * sr - 1e-9)
    return max(1, -(-n // hop)) * hop


def read_clips(folder, sr):
    path = os.path.join(folder, "captions.jsonl") if os.path.isdir(folder) else folder
    root = os.path.dirname(path)
    clips = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            audio, rate = soundfile.read(os.path.join(root, json.loads(line)["file"]), dtype="float32", always_2d=True)
            if rate != sr:
                sys.exit(f"train_codec.py: {folder}: a {rate} Hz file; only model.sample_rate = {sr} is read")
            clips.append(audio.mean(1))
    if not clips:
        sys.exit(f"train_codec.py: {folder}: no clips")
    return clips


def crop(clip, n, offset):
    out = np.zeros(n, dtype=np.float32)
    part = clip[offset:offset + n]
    out[:len(part)] = part
    return out


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
    decay = [p for n, p in model.named_parameters() if n.endswith("weight_v") or n.endswith(".weight")]
    rest = [p for n, p in model.named_parameters() if not (n.endswith("weight_v") or n.endswith(".weight"))]
    groups = [{"params": decay, "weight_decay": float(c["train.weight_decay"])}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=float(c["train.lr"]), betas=(float(c["train.beta1"]), float(c["train.beta2"])),
                             eps=1e-8)


def losses(model, x, c, mel):
    rec, codes, commit = model(x)
    l1 = (rec - x).abs().mean()
    m = mel(rec, x).mean()
    loss = float(c["loss.l1_weight"]) * l1 + float(c["loss.mel_weight"]) * m
    if float(c["loss.commitment_weight"]) > 0:
        loss = loss + float(c["loss.commitment_weight"]) * commit
    return loss, l1, m, commit


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def evaluate(model, val, c, mel_loss, metric):
    model.eval()
    B, K, bins = int(c["train.batch_size"]), int(c["model.n_codebooks"]), int(c["model.codebook_size"])
    counts = torch.zeros(K, bins)
    l1 = mel = mel_l = snr = 0.0
    for i in range(0, len(val), B):
        x = val[i:i + B]
        rec, codes, _ = model(x)
        l1 += (rec - x).abs().mean(dim=(1, 2)).sum().item()
        mel += metric(rec, x).sum().item()
        mel_l += mel_loss(rec, x).sum().item()
        snr += si_snr(rec, x).sum().item()
        for k in range(K):
            counts[k] += torch.bincount(codes[:, k].reshape(-1).cpu(), minlength=bins).float()
    model.train()
    n = len(val)
    p = counts / counts.sum(1, keepdim=True)
    entropy = -(p * torch.log(p.clamp(min=1e-30))).sum(1)
    used = (counts > 0).float().mean(1)
    out = {"val_l1": l1 / n, "val_mel": mel_l / n, "mel_distance": mel / n, "si_snr": snr / n,
           "codebook_usage": used.mean().item(), "codebook_usage_min": used.min().item(),
           "codebook_perplexity": entropy.exp().mean().item()}
    out["val_loss"] = float(c["loss.l1_weight"]) * out["val_l1"] + float(c["loss.mel_weight"]) * out["val_mel"]
    return out


def bench(model, c, a, device, params, mel):
    B, hop = int(c["train.batch_size"]), model.hop
    S = clip_samples(float(c["data.segment_seconds"]), int(c["model.sample_rate"]), hop)
    opt = make_optimizer(model, c)
    x = (torch.randn(B, 1, S) * 0.1).to(device)
    model.train()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = losses(model, x, c, mel)[0]
        loss.backward()
        opt.step()
        loss.item()

    step()  # warm-up (and the k-means initialisation)
    times = []
    for k in range(a.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        log(f"step {k + 1}/{a.steps}: {times[-1]:.3f} s")
    step_s = sorted(times)[len(times) // 2]
    return {"peer": "pytorch " + torch.__version__, "kind": "codec", "samples_per_s": B / step_s, "step_s": step_s,
            "params": params, "threads": a.threads, "device": str(device), "precision": "f32",
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def train(model, c, a, device, params, mel, metric):
    B, sr, hop = int(c["train.batch_size"]), int(c["model.sample_rate"]), model.hop
    max_steps, eval_every = int(c["train.max_steps"]), int(c["train.eval_every"])
    log_every, clip, seed = max(1, int(c["train.log_every"])), float(c["train.grad_clip"]), int(c["train.seed"])
    if not c["data.train"]:
        sys.exit("train_codec.py: the recipe names no data.train")
    S = clip_samples(float(c["data.segment_seconds"]), sr, hop)
    E = clip_samples(float(c["data.eval_seconds"]), sr, hop)
    t0 = time.time()
    tr = read_clips(c["data.train"], sr)
    val = None
    if c["data.val"]:
        clips = read_clips(c["data.val"], sr)
        n = int(c["train.eval_samples"]) or len(clips)
        val = torch.tensor(np.stack([crop(v, E, 0) for v in clips[:n]])).unsqueeze(1).to(device)
    log(f"train_codec.py: {len(tr)} training clips, {0 if val is None else len(val)} held out, "
        f"read in {time.time() - t0:.1f} s")
    per_epoch = len(tr) // B
    if per_epoch == 0:
        sys.exit(f"train_codec.py: {len(tr)} training clips make no batch of {B}")
    opt = make_optimizer(model, c)
    order_gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed * 2 + 1)
    log(f"train_codec.py: {a.recipe} | codec | {params / 1e6:.2f}M parameters | torch {torch.__version__} | {device} | "
        f"{a.threads} threads | steps 0..{max_steps}")
    order, last_eval, train_s = None, {}, 0.0
    t_log, n_log = 0.0, 0
    model.train()
    for step in range(max_steps):
        k = step % per_epoch
        if k == 0:
            order = torch.randperm(len(tr), generator=order_gen).numpy()
        batch = []
        for i in order[k * B:(k + 1) * B]:
            clip_i = tr[i]
            offset = int(rng.integers(0, len(clip_i) - S + 1)) if len(clip_i) > S else 0
            batch.append(crop(clip_i, S, offset))
        x = torch.tensor(np.stack(batch)).unsqueeze(1).to(device)
        ts = time.perf_counter()
        lr = lr_at(step, c)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss, l1, m, commit = losses(model, x, c, mel)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item() if clip > 0 else float("nan")
        opt.step()
        loss_v = loss.item()
        if not math.isfinite(loss_v):
            sys.exit(f"train_codec.py: training diverged at step {step + 1}: loss is {loss_v}")
        sync(device)
        dt = time.perf_counter() - ts
        train_s += dt
        t_log += dt
        n_log += B
        done = step + 1
        if done % log_every == 0 or done == max_steps:
            log(f"step {done:6d}/{max_steps} | loss {loss_v:.4f} | l1 {l1.item():.4f} | mel {m.item():.4f} | "
                f"commitment {commit.item():.5f} | lr {lr:.2e} | grad_norm {gnorm:.3f} | {n_log / t_log:.2f} clips/s")
            t_log, n_log = 0.0, 0
        if val is not None and ((eval_every > 0 and done % eval_every == 0) or done == max_steps):
            te = time.time()
            last_eval = evaluate(model, val, c, mel, metric)
            last_eval["eval_s"] = time.time() - te
            log(json.dumps({"step": done, **last_eval, "train_loss": loss_v}))
    out = {"final": True, "peer": "pytorch " + torch.__version__, "kind": "codec", "recipe": a.recipe,
           "steps": max_steps, "seed": seed, "params": params, "threads": a.threads, "device": str(device),
           "train_loss": loss_v, "clips_per_s": max_steps * B / train_s, "step_s": train_s / max_steps,
           "train_s": train_s, "elapsed_s": time.time() - t0}
    out.update(last_eval)
    return out


def main():
    a, overrides = parse_args(sys.argv[1:])
    c = read_config(a.recipe, overrides)
    if a.seed is not None:
        c["train.seed"] = str(a.seed)
    if a.bench:
        a.steps = 10 if a.steps is None else a.steps
    elif a.steps is not None:
        c["train.max_steps"] = str(a.steps)
        if c["train.schedule"] != "constant" and a.steps <= int(c["train.warmup_steps"]):
            c["train.warmup_steps"] = str(a.steps // 5)
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    device = torch.device(a.device)
    seed = int(c["train.seed"])
    torch.manual_seed(seed)
    model = Codec(c, torch.Generator().manual_seed(seed * 2 + 1)).to(device)
    model.quantizer.to(device)
    params = sum(p.numel() for p in model.parameters())
    sr = int(c["model.sample_rate"])
    mel = MelDistance(sr, int(c["loss.mel_min_log2"]), int(c["loss.mel_max_log2"]), int(c["loss.n_mels"]),
                      float(c["loss.mel_floor"]), device)
    metric = MelDistance(sr, 6, 11, 64, 1e-5, device)
    out = bench(model, c, a, device, params, mel) if a.bench else train(model, c, a, device, params, mel, metric)
    line = json.dumps(out)
    print(line, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch peer of bench/bench_loader.cpp: image-text loading throughput of a
torch DataLoader over the same JPEG WebDataset shards (python3 bench/peers/make_jpeg_shards.py),
with the usual torchvision pipeline: PIL decode + convert("RGB"),
RandomResizedCrop(size, scale=(scale_min, 1)), RandomHorizontalFlip,
ToTensor, Normalize(0.5, 0.5); the caption (KEY.txt) tokenised as libfm's
CLIP does (UTF-8 bytes + <|endoftext|> 256, zero padding to --context).

The shards are indexed once (member offsets, grouped by key as webdataset
does); each sample is then two os.pread calls, as libfm's reader, so the
work per sample is the same on both sides: read, decode, crop, resize,
flip, convert, normalise, tokenise, collate.

usage: python3 bench/peers/loader_torchvision.py --shards 'DIR/jpeg-{000000..000004}.tar'
           [--workers 1,2] [--batch 64] [--size 64] [--epochs 2] [--scale-min 0.08]
           [--context 32] [--threads 1] [--no-flip]
One JSON line per worker count, the fields of bench_loader's: images_per_s
(the batches after the first, which starts the worker processes),
per_worker, first_batch_s, images. Differences that remain: torch workers
are processes that also collate their batch (libfm's are threads, and the
calling thread stacks); torch reads ahead 2 batches per worker, libfm 4 in all.
"""
import argparse
import io
import json
import os
import re
import tarfile
import time

import torch
import torchvision
from PIL import Image
from torchvision import transforms

EOT = 256
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def expand_braces(pattern):
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    body, head, tail = m.group(1), pattern[:m.start()], pattern[m.end():]
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    items = ([str(i).zfill(len(r.group(1))) for i in range(int(r.group(1)), int(r.group(2)) + 1)]
             if r else body.split(","))
    return [p for it in items for p in expand_braces(head + it + tail)]


def index_shards(patterns):
    """[(path, (image offset, size), (caption offset, size))] in shard order."""
    samples = []
    for pattern in patterns:
        for path in expand_braces(pattern):
            groups = {}
            with tarfile.open(path, "r:") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    d, base = os.path.split(m.name)
                    key, _, ext = base.partition(".")
                    groups.setdefault(os.path.join(d, key), {})[ext.lower()] = (m.offset_data, m.size)
            for key, members in groups.items():
                img = next((members[e] for e in IMAGE_EXTS if e in members), None)
                if img and "txt" in members:
                    samples.append((path, img, members["txt"]))
    return samples


class ShardDataset(torch.utils.data.Dataset):
    def __init__(self, samples, transform, context):
        self.samples, self.transform, self.context = samples, transform, context
        self.fds = {}

    def _read(self, path, where):
        fd = self.fds.get(path)
        if fd is None:  # opened in each worker process
            fd = self.fds[path] = os.open(path, os.O_RDONLY)
        return os.pread(fd, where[1], where[0])

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, img, txt = self.samples[i]
        image = Image.open(io.BytesIO(self._read(path, img))).convert("RGB")
        caption = self._read(path, txt).decode("utf-8")
        ids = list(caption.encode("utf-8"))[:self.context - 1]
        row = ids + [EOT] + [0] * (self.context - 1 - len(ids))
        return {"image": self.transform(image), "text": torch.tensor(row, dtype=torch.int64),
                "eot": torch.tensor(len(ids), dtype=torch.int64)}

    def __getstate__(self):  # no open descriptors across processes
        s = dict(self.__dict__)
        s["fds"] = {}
        return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--scale-min", type=float, default=0.08)
    ap.add_argument("--context", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-flip", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)  # the main process collates; workers run with 1 thread each
    t_open = time.perf_counter()
    samples = index_shards(a.shards.split())
    open_s = time.perf_counter() - t_open
    steps = [transforms.RandomResizedCrop(a.size, scale=(a.scale_min, 1.0), antialias=True)]
    if not a.no_flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    ds = ShardDataset(samples, transforms.Compose(steps), a.context)
    for w in [int(s) for s in a.workers.split(",") if s]:
        g = torch.Generator().manual_seed(1337)
        t0 = time.perf_counter()
        loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True, num_workers=w,
                                             persistent_workers=w > 0, generator=g)
        it = (b for _ in range(a.epochs) for b in loader)
        b = next(it)  # starts the workers
        first_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        images = 0
        for b in it:
            images += len(b["image"])
        steady_s = time.perf_counter() - t1
        ips = images / steady_s if images else 0.0
        print(json.dumps({
            "loader": f"torchvision {torchvision.__version__} + PIL {Image.__version__}",
            "workers": w, "images_per_s": round(ips, 1), "per_worker": round(ips / w if w else ips, 1),
            "first_batch_s": round(first_s, 3), "images": images, "batch": a.batch, "size": a.size,
            "samples": len(samples), "open_s": round(open_s, 3), "image_shape": list(b["image"].shape),
            "start_method": torch.multiprocessing.get_start_method(),
        }), flush=True)
        del it, loader


if __name__ == "__main__":
    main()

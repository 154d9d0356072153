#!/usr/bin/env python3
"""Writes JPEG image-text pairs into WebDataset shards (uncompressed tar,
members KEY.jpg, KEY.txt, KEY.cls), for the loader benchmark
(bench/bench_loader.cpp beside bench/peers/loader_torchvision.py).

Sources:
  default       Fashion-MNIST training images (IDX .gz, Debian's
                dataset-fashion-mnist), upscaled to --size with PIL's bicubic
                filter and stored as RGB (grey repeated), so both loaders
                decode and crop 3-channel images; caption "a photo of a
                <class>." from the 12 prompt templates in turn.
  --from DIR    every .png/.jpg/.jpeg/.bmp/.webp under DIR (sorted; e.g. the
                output of `fm prepare shapes`), converted to RGB and, when
                --size is given, resized to --size x --size; caption from a
                sibling KEY.txt if there is one, else the file name.

usage: python3 bench/peers/make_jpeg_shards.py --out DIR [--n 5000] [--size 96] [--quality 90]
           [--per-shard 1000] [--from DIR] [--idx IMAGES.gz,LABELS.gz]
Prints the brace pattern of the shards (DIR/jpeg-{000000..00000K}.tar).
"""
import argparse
import gzip
import io
import os
import sys
import tarfile

import numpy as np
from PIL import Image

FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz,/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TEMPLATES = [
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a close-up photo of a {}.", "a bright photo of a {}.",
    "a cropped photo of a {}.", "a good photo of a {}.", "a photo of the {}.",
    "a rendering of a {}.", "a drawing of a {}.", "a photo of one {}.",
]


def read_idx(path):
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def idx_samples(spec, n, size):
    images, labels = (s.strip() for s in spec.split(","))
    x, y = read_idx(images), read_idx(labels)
    for i in range(min(n, len(x))):
        img = Image.fromarray(x[i], "L")
        if size and size != img.width:
            img = img.resize((size, size), Image.BICUBIC)
        yield img.convert("RGB"), TEMPLATES[i % len(TEMPLATES)].format(CLASSES[int(y[i])]), int(y[i])


def folder_samples(root, n, size):
    exts = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.lower().endswith(exts))
    for p in paths[:n]:
        img = Image.open(p).convert("RGB")
        if size:
            img = img.resize((size, size), Image.BICUBIC)
        txt = os.path.splitext(p)[0] + ".txt"
        caption = open(txt, encoding="utf-8").read().strip() if os.path.exists(txt) else os.path.basename(p)
        yield img, caption, -1


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=96, help="output side (0 with --from: keep)")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--from", dest="src", default="", help="an image folder instead of Fashion-MNIST")
    ap.add_argument("--idx", default=FMNIST, help="IMAGES,LABELS IDX files")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    samples = folder_samples(a.src, a.n, a.size) if a.src else idx_samples(a.idx, a.n, a.size)
    shard, tar, count, paths, jpeg_bytes = -1, None, 0, [], 0
    for i, (img, caption, label) in enumerate(samples):
        if i % a.per_shard == 0:
            if tar:
                tar.close()
                os.replace(paths[-1] + ".tmp", paths[-1])
            shard += 1
            paths.append(os.path.join(a.out, f"jpeg-{shard:06d}.tar"))
            tar = tarfile.open(paths[-1] + ".tmp", "w", format=tarfile.USTAR_FORMAT)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=a.quality)
        key = f"{i:08d}"
        add(tar, key + ".jpg", buf.getvalue())
        add(tar, key + ".txt", caption.encode("utf-8"))
        if label >= 0:
            add(tar, key + ".cls", str(label).encode())
        jpeg_bytes += buf.tell()
        count += 1
    if tar:
        tar.close()
        os.replace(paths[-1] + ".tmp", paths[-1])
    if count == 0:
        sys.exit("make_jpeg_shards: no images")
    pattern = os.path.join(a.out, f"jpeg-{{000000..{shard:06d}}}.tar") if shard > 0 else paths[0]
    print(f"make_jpeg_shards: {count} samples, {len(paths)} shards, mean JPEG {jpeg_bytes / count:.0f} bytes", file=sys.stderr)
    print(pattern)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""tiktoken peer of bench_bpe: encode_ordinary throughput (one thread) of the
gpt2 encoding, built offline from tests/fixtures/gpt2.tiktoken, on the same
text as BM_bpe_encode_gpt2 (the UTF-8 samples of bpe_gpt2_samples.bin).

usage: pip install tiktoken && python3 bench/peers/bpe_tiktoken.py [--repeats 5]
Prints one JSON line per text: category, bytes, tokens, mb_per_s (best of the repeats).
"""
import argparse
import json
import os
import struct
import time

import tiktoken
import tiktoken.load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def fixture_text(category):
    """As bench_bpe.cpp: samples labelled `category`*, except invalid UTF-8 and special tokens."""
    with open(os.path.join(FIXTURES, "bpe_gpt2_samples.bin"), "rb") as f:
        data = f.read()
    (count,) = struct.unpack_from("<I", data, 8)
    pos, parts = 12, []
    for _ in range(count):
        (label_size,) = struct.unpack_from("<H", data, pos)
        label = data[pos + 2:pos + 2 + label_size].decode()
        pos += 2 + label_size
        flags, size = struct.unpack_from("<BI", data, pos)
        sample = data[pos + 5:pos + 5 + size]
        pos += 5 + size
        (n_ids,) = struct.unpack_from("<I", data, pos)
        pos += 4 + (8 if flags & 2 else 2 * n_ids)
        if label.startswith(category) and not label.startswith(("invalid", "special")):
            parts.append(sample)
    return b"".join(parts).decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    enc = tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN,
                            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(os.path.join(FIXTURES, "gpt2.tiktoken")),
                            special_tokens={"<|endoftext|>": 50256})
    for category in ("", "prose", "code", "multilingual"):
        text = fixture_text(category)
        n_bytes = len(text.encode())
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            ids = enc.encode_ordinary(text)
            best = min(best, time.perf_counter() - t0)
        print(json.dumps({"peer": "tiktoken " + tiktoken.__version__, "category": category or "all",
                          "bytes": n_bytes, "tokens": len(ids), "mb_per_s": n_bytes / 1e6 / best}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The table tools/gpu-check prints last: test outcome, GEMM ratios against
cuBLASLt, attention and GPT-2 124M training step against PyTorch.
usage: gpu_summary.py OUT_DIR TESTS_RC CARD"""
import json
import pathlib
import re
import sys


def json_lines(path):
    out = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def main():
    out, rc, card = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    rows = [("card", card)]
    counts = {"PASSED": 0, "FAILED": 0, "SKIPPED": 0}
    for log in sorted(out.glob("test_cuda_*.log")):
        if log.name.endswith(".alone.log"):
            continue
        for word, n in re.findall(r"^\[  (PASSED|FAILED|SKIPPED) *\] (\d+) tests?", log.read_text(errors="replace"), re.M):
            counts[word] += int(n)
    alone = (out / "alone.txt").read_text().count("FAILS alone") if (out / "alone.txt").exists() else 0
    rows.append(("cuda tests", f"{counts['PASSED']} passed, {counts['FAILED']} failed ({alone} of them alone), "
                 f"{counts['SKIPPED']} skipped (exit {rc})"))
    gemm = json_lines(out / "gemm.txt")
    if gemm:
        ratios = sorted(g["ratio"] for g in gemm)
        rows.append(("GEMM vs cuBLASLt best", f"min {ratios[0]:.2f}, median {ratios[len(ratios) // 2]:.2f}, "
                     f"{sum(r >= 0.9 for r in ratios)}/{len(ratios)} shapes >= 0.90"))
    theirs = json_lines(out / "attention_torch.json")
    for name, kernels in (("attention.txt", ""), ("attention_mma.txt", " (mma)")):
        for a in json_lines(out / name):
            peer = next((t for t in theirs if t["T"] == a["T"] and t["B"] == a["B"]), None)
            ratio = f", {peer['fwd_bwd_ms'] / a['fwd_bwd_ms']:.2f}x PyTorch" if peer else ""
            rows.append((f"attention{kernels} B={a['B']} T={a['T']} fwd+bwd", f"{a['fwd_bwd_ms']:.3f} ms{ratio}"))
    g_ours, g_theirs = json_lines(out / "gpt_libfm.json"), json_lines(out / "gpt_torch.json")
    if g_ours and "tokens_per_s" in g_ours[0]:
        o = g_ours[0]
        text = f"{o['tokens_per_s']:.0f} tok/s, MFU {100 * o['mfu']:.1f}%"
        if g_theirs:
            text += f"; PyTorch compiled {g_theirs[0]['tokens_per_s']:.0f} tok/s " \
                    f"({o['tokens_per_s'] / g_theirs[0]['tokens_per_s']:.2f}x)"
        rows.append(("GPT-2 124M step, bf16", text))
    elif g_ours:
        rows.append(("GPT-2 124M step, bf16", g_ours[0].get("skipped", "no result")))
    g_mma = json_lines(out / "gpt_libfm_mma.json")
    if g_mma and "tokens_per_s" in g_mma[0]:
        rows.append(("GPT-2 124M step, mma attention", f"{g_mma[0]['tokens_per_s']:.0f} tok/s"))
    width = max(len(k) for k, _ in rows)
    print("-" * 72)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * 72)


if __name__ == "__main__":
    main()

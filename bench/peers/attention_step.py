#!/usr/bin/env python3
"""PyTorch peer of bench_attention_cuda: causal F.scaled_dot_product_attention
forward and forward + backward in bf16 on the GPU (the flash kernel), same
shapes and JSON fields, CUDA-event medians."""
import json

import torch
import torch.nn.functional as F


def median_ms(f):
    for _ in range(3):
        f()
    times = []
    for _ in range(10):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        f()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def main():
    name = torch.cuda.get_device_name(0)
    for B, H, T, D in [(8, 12, 1024, 64), (4, 12, 2048, 64)]:
        q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        g = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)

        def fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def fwd_bwd():
            F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g)

        f_ms, fb_ms = median_ms(fwd), median_ms(fwd_bwd)
        flop = 2.0 * B * H * T * T * D
        print(json.dumps({"peer": "pytorch " + torch.__version__, "B": B, "H": H, "T": T, "D": D, "fwd_ms": f_ms,
                          "fwd_bwd_ms": fb_ms, "fwd_tflops": flop / f_ms / 1e9,
                          "fwd_bwd_tflops": 3.5 * flop / fb_ms / 1e9, "device": name}))


if __name__ == "__main__":
    main()

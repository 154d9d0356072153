#!/usr/bin/env python3
"""Cross-check of libfm's sampling: loads a libfm diffusion checkpoint (its
EMA weights when saved) into the PyTorch peer's model (bench/peers/train_dit.py,
the same parameter names) and samples one prompt with the peer's own guided
flow-Euler loop, writing a 4 x 4 grid. Model options are the peer's flags
(defaults: experiments/t2i_shapes.ini).

usage: python3 bench/peers/sample_libfm_run.py CHECKPOINT_DIR OUT.png [--prompt TEXT] [--live] [peer flags...]
"""
import argparse
import os
import sys

import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_dit as peer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--prompt", default="a large red circle on the left")
    p.add_argument("--live", action="store_true", help="the trained weights, not the EMA ones")
    p.add_argument("--seed", type=int, default=1)
    own, rest = p.parse_known_args()
    a = peer.parse_args(rest)
    torch.set_num_threads(a.threads)
    tok = peer.BpeTokenizer(a.tokenizer)
    model = peer.TextToImage(a, tok.vocab_size)
    weights = load_file(os.path.join(own.checkpoint, "model.safetensors"))
    if not own.live:
        state = load_file(os.path.join(own.checkpoint, "train_state.safetensors"))
        weights.update({k[len("state.ema."):]: v for k, v in state.items() if k.startswith("state.ema.")})
    weights.pop("dit.pos", None)  # a fixed buffer the peer computes itself
    model.load_state_dict(weights, strict=True)
    model.eval()
    ids, eot = peer.tokenize_all(tok, [own.prompt] * 16, a.context_length)
    null_ids, null_eot = peer.tokenize_all(tok, [""], a.context_length)
    gen = torch.Generator().manual_seed(own.seed)
    x = peer.generate(model, ids, eot, null_ids, null_eot, a.sample_steps, a.cfg, gen, torch.device("cpu"))
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().byte()
    side = a.image_size
    grid = torch.zeros(x.shape[1], 4 * (side + 2) + 2, 4 * (side + 2) + 2, dtype=torch.uint8)
    for i in range(16):
        r, c = divmod(i, 4)
        grid[:, 2 + r * (side + 2): 2 + r * (side + 2) + side, 2 + c * (side + 2): 2 + c * (side + 2) + side] = x[i]
    Image.fromarray(grid.permute(1, 2, 0).squeeze(-1).numpy()).save(own.out)
    print(own.out)


if __name__ == "__main__":
    main()

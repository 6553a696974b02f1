"""Generate text from a checkpoint.

    python -m nanomoe.sample --checkpoint experiments/ablation/rope+moe+fgram/ckpt.pt \\
        --prompt "ROMEO:" --tokens 500
"""

from __future__ import annotations

import argparse
import sys

import torch

from nanomoe.checkpoint import load_checkpoint, model_from_checkpoint
from nanomoe.data import CharTokenizer
from nanomoe.device import resolve_device


def generate_text(
    ckpt: dict,
    prompt: str,
    tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 1337,
    device: str = "cpu",
) -> str:
    """Prompt plus ``tokens`` sampled characters, deterministic for a given seed."""
    tok = CharTokenizer(ckpt["chars"])
    model = model_from_checkpoint(ckpt).to(device).eval()
    idx = torch.tensor([tok.encode(prompt)], dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, tokens, temperature=temperature, top_k=top_k, generator=gen)
    return tok.decode(out[0].tolist())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nanomoe.sample", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a ckpt.pt written by training")
    p.add_argument("--prompt", default="\n", help="text to continue (characters of the corpus)")
    p.add_argument("--tokens", type=int, default=500, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=200, help="0 disables top-k filtering")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if a.tokens < 0 or a.temperature <= 0 or a.top_k < 0:
        p.error("--tokens and --top-k must be >= 0 and --temperature > 0")
    if not a.prompt:
        p.error("--prompt must not be empty: give at least one character to continue")
    try:
        ckpt = load_checkpoint(a.checkpoint)
    except FileNotFoundError:
        print(f"error: checkpoint {a.checkpoint} not found; train a model first", file=sys.stderr)
        return 2
    if "chars" not in ckpt:
        print(
            f"error: {a.checkpoint} has no vocabulary ('chars'); not a NanoMoE checkpoint",
            file=sys.stderr,
        )
        return 2
    try:
        device = str(resolve_device(a.device))
    except ValueError as e:
        print(f"error: --{e}", file=sys.stderr)
        return 2
    try:
        text = generate_text(
            ckpt, a.prompt, a.tokens, a.temperature, a.top_k or None, a.seed, device
        )
    except ValueError as e:  # unknown characters in the prompt
        print(f"error: --prompt: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

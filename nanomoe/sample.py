"""Generate text from a checkpoint.

Trained on a corpus of documents, a model also predicts where a document ends: sampling
stops at the first end-of-document token it draws, and the text ends there.

    python -m nanomoe.sample --prompt "ROMEO:" --tokens 500 \\
        --checkpoint experiments/ablation/rope-true_moe-true_fgram-true_seed-1337/ckpt.pt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from nanomoe.checkpoint import load_checkpoint, model_from_checkpoint
from nanomoe.config import InputError, SampleConfig
from nanomoe.device import resolve_device
from nanomoe.model import GPT
from nanomoe.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_dict

# generation's parameters and their defaults, by the names a served model takes
GENERATION_DEFAULTS = {"max_new_tokens": 200, "temperature": 0.8, "top_k": 200, "seed": 1337}
CKPT_FIX = "pass --checkpoint the ckpt.pt of a finished training run (dvc repro trains them)"


def generate_text(
    ckpt: dict,
    prompt: str,
    tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 1337,
    device: str = "cpu",
) -> str:
    """Prompt plus ``tokens`` sampled tokens, deterministic for a given seed.
    ``top_k`` 0 or None: no top-k filtering."""
    model = model_from_checkpoint(ckpt)
    return generate(
        model, tokenizer_of(ckpt, model), prompt, tokens, temperature, top_k, seed, device
    )


def tokenizer_of(ckpt: dict, model: GPT) -> Tokenizer:
    """The checkpoint's tokenizer; a checkpoint from before tokenizers were saved holds its
    characters, and the end-of-document token when the model has one id more than it has
    characters (the id after them)."""
    if "tokenizer" in ckpt:
        tok = tokenizer_from_dict(ckpt["tokenizer"])
        if tok.vocab_size != model.config.vocab_size:
            raise ValueError(
                f"its tokenizer has {tok.vocab_size} ids, its model {model.config.vocab_size}"
            )
        return tok
    chars = ckpt["chars"]
    return CharTokenizer(chars, eod=model.config.vocab_size == len(chars) + 1)


def generate(
    model: GPT,
    tok: Tokenizer,
    prompt: str,
    tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
    device: str,
) -> str:
    """``prompt`` plus up to ``tokens`` tokens sampled from ``model``, decoded; it stops at
    an end-of-document token. The same seed gives the same text."""
    idx = torch.tensor([tok.encode(prompt)], dtype=torch.long, device=device)
    model = model.to(device).eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, tokens, temperature=temperature, top_k=top_k, generator=gen)
    ids = out[0].tolist()
    new = ids[idx.shape[1] :]
    if tok.eod_id in new:  # the document ended: so does the sample
        ids = ids[: idx.shape[1] + new.index(tok.eod_id)]
    return tok.decode(ids)


def read_checkpoint(path: str | Path) -> tuple[GPT, Tokenizer]:
    """The model and vocabulary of a checkpoint file. A missing, truncated or foreign file,
    a folder, or a checkpoint whose weights do not fit its config raises an InputError
    naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "not found", CKPT_FIX)
    if not path.is_file():
        raise InputError(path, "is a folder, not a checkpoint file", CKPT_FIX)
    try:
        ckpt = load_checkpoint(path)
    except Exception as err:  # torch.load fails in many ways on bad bytes; all mean a bad file
        problem = (
            f"not a readable checkpoint, truncated or not saved by torch ({type(err).__name__})"
        )
        raise InputError(path, problem, CKPT_FIX) from None
    if not isinstance(ckpt, dict):
        raise InputError(path, f"holds a {type(ckpt).__name__}, not a NanoMoE checkpoint", CKPT_FIX)
    vocab = ("tokenizer", dict) if "tokenizer" in ckpt else ("chars", str)
    for key, kind in (vocab, ("model_config", dict), ("model", dict)):
        if not isinstance(ckpt.get(key), kind):
            problem = f"has no {key!r} ({kind.__name__}): not a NanoMoE checkpoint"
            raise InputError(path, problem, CKPT_FIX)
    try:
        model = model_from_checkpoint(ckpt)
        tok = tokenizer_of(ckpt, model)
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        problem = f"its weights do not fit its model_config ({reason})"
        raise InputError(path, problem, CKPT_FIX) from None
    return model, tok


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """The options of every sampling command, whatever the model's source."""
    p.add_argument(
        "--prompt", default="\n", help="text to continue (a char model: characters of its corpus)"
    )
    p.add_argument("--tokens", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=200, help="0 disables top-k filtering")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cpu")


def sampling_config(p: argparse.ArgumentParser, a: argparse.Namespace) -> SampleConfig:
    """The options checked by the rules of params.yaml's sample: section (exit 2 if not)."""
    try:
        s = SampleConfig(tokens=a.tokens, temperature=a.temperature, top_k=a.top_k)
    except ValueError as e:
        name, _, rule = str(e).partition(": ")
        p.error(f"--{name.replace('_', '-')}: {rule}")
    if not a.prompt:
        p.error("--prompt must not be empty: give at least one character to continue")
    return s


def print_sample(model: GPT, tok: Tokenizer, a: argparse.Namespace, s: SampleConfig) -> int:
    """Generate from ``model`` as the options say and print it; 2 on a bad device or prompt."""
    try:
        device = str(resolve_device(a.device))
    except ValueError as e:
        print(f"error: --{e}", file=sys.stderr)
        return 2
    try:
        text = generate(model, tok, a.prompt, s.tokens, s.temperature, s.top_k, a.seed, device)
    except ValueError as e:  # unknown characters in the prompt
        print(f"error: --prompt: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


def sample_command(
    p: argparse.ArgumentParser, argv: list[str] | None, locate: Callable[[argparse.Namespace], str]
) -> int:
    """A sampling command: ``p`` (with its option naming the model) plus the sampling options;
    the checkpoint file is ``locate(args)``. A bad input: one line, exit 2."""
    add_sampling_options(p)
    a = p.parse_args(argv)
    s = sampling_config(p, a)
    try:
        model, tok = read_checkpoint(locate(a))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return print_sample(model, tok, a, s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nanomoe.sample", description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkpoint", required=True, help="a ckpt.pt written by training, or a run's model.pt"
    )
    return sample_command(p, argv, lambda a: a.checkpoint)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m nanomoe.sample`` on a checkpoint from a tiny training run."""

from __future__ import annotations

import pytest
import torch

from nanomoe.checkpoint import load_checkpoint, tokenizer_entry
from nanomoe.config import TrainConfig
from nanomoe.sample import generate_text, main
from nanomoe.trainer import Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model, tiny_splits, tiny_tokenizer):
    train, val = tiny_splits
    path = tmp_path_factory.mktemp("sample") / "ckpt.pt"
    cfg = TrainConfig(
        batch_size=4, max_iters=6, eval_interval=3, eval_iters=1, warmup_iters=1,
        learning_rate=3e-3, min_lr=3e-4, device="cpu", progress=False,
    )  # fmt: skip
    model = tiny_model(rope=True, moe=True, fgram=True)
    Trainer(
        model,
        train,
        val,
        cfg,
        checkpoint_path=path,
        checkpoint_extra=tokenizer_entry(tiny_tokenizer),  # as the train stage saves it
    ).fit()
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_sample_prints_text_that_starts_with_the_prompt(capsys, checkpoint, tiny_tokenizer):
    prompt = "the café"
    rc, out, err = run(
        capsys, "--checkpoint", str(checkpoint), "--prompt", prompt, "--tokens", "40"
    )
    assert rc == 0 and err == ""
    text = out.removesuffix("\n")
    assert text.startswith(prompt)
    assert len(text) == len(prompt) + 40
    assert set(text) <= set(tiny_tokenizer.chars)


def test_sample_with_the_same_seed_gives_the_same_text(capsys, checkpoint):
    args = ["--checkpoint", str(checkpoint), "--prompt", "the", "--tokens", "60", "--top-k", "0"]
    outs = [run(capsys, *args, "--seed", seed)[1] for seed in ("3", "3", "4")]
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_generate_text_matches_the_command_line(capsys, checkpoint):
    ckpt = load_checkpoint(checkpoint)
    text = generate_text(ckpt, "dog", 25, temperature=0.8, top_k=200, seed=9)
    rc, out, _ = run(
        capsys, "--checkpoint", str(checkpoint), "--prompt", "dog", "--tokens", "25", "--seed", "9"
    )
    assert rc == 0 and out == text + "\n"


def test_prompt_with_unknown_characters_fails_with_a_one_line_error(capsys, checkpoint):
    rc, out, err = run(capsys, "--checkpoint", str(checkpoint), "--prompt", "the Zebra€")
    assert rc != 0
    assert out == ""
    assert err.strip() and "\n" not in err.strip()
    assert "Z" in err and "€" in err
    assert "Traceback" not in err


def test_missing_checkpoint_fails_with_a_one_line_error(capsys, tmp_path):
    rc, out, err = run(capsys, "--checkpoint", str(tmp_path / "nope.pt"))
    assert rc != 0 and out == ""
    assert "nope.pt" in err and "\n" not in err.strip()


@pytest.mark.parametrize(
    "drop, tokenizer, word",
    [
        (("chars", "tokenizer"), None, "chars"),  # no vocabulary at all
        ((), "char", "tokenizer"),  # a tokenizer that is not its to_dict
    ],
    ids=["no-vocabulary", "tokenizer-not-a-dict"],
)
def test_checkpoint_without_vocabulary_is_rejected(
    capsys, tmp_path, checkpoint, drop, tokenizer, word
):
    ckpt = load_checkpoint(checkpoint)
    for key in drop:
        del ckpt[key]
    if tokenizer is not None:
        ckpt["tokenizer"] = tokenizer
    bare = tmp_path / "bare.pt"
    torch.save(ckpt, bare)
    rc, out, err = run(capsys, "--checkpoint", str(bare), "--prompt", "the")
    assert rc != 0 and out == ""
    assert word in err and "\n" not in err.strip() and "Traceback" not in err


def test_a_checkpoint_from_before_tokenizers_were_saved_samples_as_before(checkpoint):
    """A checkpoint holding only ``chars`` (every checkpoint before the tokenizer switch)
    samples as the same checkpoint with its tokenizer does. Mutation killed: tokenizer_of's
    fallback to ``chars`` removed (a KeyError on every older checkpoint)."""
    ckpt = load_checkpoint(checkpoint)
    assert ckpt["tokenizer"]["kind"] == "char" and ckpt["chars"] == ckpt["tokenizer"]["chars"]
    old = {k: v for k, v in ckpt.items() if k != "tokenizer"}
    texts = [generate_text(c, "the", 30, seed=2) for c in (ckpt, old)]
    assert texts[0] == texts[1]


def test_a_tokenizer_of_another_size_than_the_model_is_one_line(capsys, tmp_path, checkpoint):
    """Mutation killed: tokenizer_of's vocab_size check removed (ids past the tokenizer's
    end are drawn and decoding them fails, or a wrong vocabulary decodes silently)."""
    from nanomoe.tokenizer import CharTokenizer

    ckpt = load_checkpoint(checkpoint)
    chars = ckpt["tokenizer"]["chars"]
    ckpt["tokenizer"] = CharTokenizer(chars[:-1]).to_dict()  # one id fewer than the model
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    rc, out, err = run(capsys, "--checkpoint", str(other), "--prompt", "the")
    assert rc == 2 and out == ""
    assert "other.pt" in err and "tokenizer has" in err and "\n" not in err.strip()


@pytest.mark.parametrize(
    "args, word",
    [
        (["--prompt", ""], "--prompt"),
        (["--top-k", "-1"], "--top-k"),
        (["--tokens", "-5"], "--tokens"),
        (["--temperature", "0"], "--temperature"),
    ],
)
def test_bad_sampling_flags_exit_2_with_a_usage_error(capsys, checkpoint, args, word):
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(checkpoint), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert word in err and "Traceback" not in err


def test_cuda_device_without_cuda_fails_with_a_one_line_error(capsys, checkpoint, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, out, err = run(
        capsys, "--checkpoint", str(checkpoint), "--prompt", "the", "--device", "cuda"
    )
    assert rc == 2 and out == ""
    assert "CUDA" in err and "\n" not in err.strip()


def test_top_k_zero_means_off_as_none_does(checkpoint):
    ckpt = load_checkpoint(checkpoint)
    texts = [generate_text(ckpt, "the", 30, top_k=k, seed=5) for k in (0, None, 10_000)]
    assert texts[0] == texts[1] == texts[2]
    with pytest.raises(ValueError, match="top_k"):
        generate_text(ckpt, "the", 5, top_k=-1)


def test_sampling_stops_at_the_first_end_of_document_token(monkeypatch):
    """A model trained on documents ends them: the sample is cut before the first end
    token it draws, never before the prompt. Mutation killed: the cut taken from the
    prompt's start, or the end token decoded into the text."""
    from nanomoe import sample
    from nanomoe.model import GPT, GPTConfig
    from nanomoe.tokenizer import CharTokenizer

    tok = CharTokenizer("abc", eod=True)
    model = GPT(GPTConfig(vocab_size=4, block_size=8, n_layer=1, n_head=1, n_embd=8))
    drawn = [0, 1, 2, 3, 0, 3]  # "abc", the end token, "a", the end token

    def generate(idx, tokens, **kw):
        return torch.cat([idx, torch.tensor([drawn[:tokens]])], dim=1)

    monkeypatch.setattr(model, "generate", generate)
    assert sample.generate(model, tok, "cb", 6, 1.0, None, 0, "cpu") == "cbabc"
    assert sample.generate(model, tok, "cb", 2, 1.0, None, 0, "cpu") == "cbab"

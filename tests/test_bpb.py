"""Bits per UTF-8 byte (nanomoe/evaluate.py): the summed nats of the targets over ln 2 x their
summed raw bytes, zero-byte targets (the end-of-document token) left out of both sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nanomoe.config import GPTConfig, TrainConfig
from nanomoe.evaluate import batches_loss, full_split_loss
from nanomoe.model import GPT
from nanomoe.trainer import Trainer, set_seed

# A model that predicts ids 0..3 with probabilities 1/2, 1/4, 1/8, 1/8 everywhere: a target
# costs 1, 2, 3 or 3 bits. Ids 0, 1, 2 stand for 1, 2 and 4 bytes; id 3 is the end token.
LOGITS = torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125]))
SIZES = torch.tensor([1, 2, 4, 0])
DATA = np.array([2, 0, 1, 2, 3, 1])  # targets 0, 1, 2, 3, 1: bits 1+2+3+(3)+2, bytes 1+2+4+2


def forward(x, y=None):
    logits = LOGITS.expand(*x.shape, 4)
    loss = (
        None
        if y is None
        else torch.nn.functional.cross_entropy(logits.reshape(-1, 4), y.reshape(-1))
    )
    return logits, loss


def no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_full_split_bpb_is_nats_over_ln2_bytes_leaving_the_end_token_out():
    """By hand: the end-token target (3 bits, 0 bytes) is left out of both sums, so 8 bits
    over 9 bytes. Mutations killed: the end token's nats kept (11/9); its byte counted as 1
    (8/10); byte lengths of the inputs instead of the targets."""
    loss, bpb = full_split_loss(forward, DATA, 5, 4, torch.device("cpu"), no_autocast, SIZES)
    assert loss == pytest.approx(11 * math.log(2) / 5)
    assert bpb == pytest.approx(8 / 9, rel=1e-6)  # float32 logits


def test_batch_bpb_follows_the_same_formula():
    x, y = torch.from_numpy(DATA[None, :-1]), torch.from_numpy(DATA[None, 1:])
    loss, bpb = batches_loss(
        forward, [(x, y)], slice(None), torch.device("cpu"), no_autocast, SIZES
    )
    assert loss == pytest.approx(11 * math.log(2) / 5)
    assert bpb == pytest.approx(8 / 9, rel=1e-6)  # float32 logits


def test_without_token_bytes_bpb_is_nan():
    _, bpb = full_split_loss(forward, DATA, 5, 4, torch.device("cpu"), no_autocast)
    assert math.isnan(bpb)


def test_char_bpb_on_ascii_is_nats_per_char_over_ln2():
    """One byte per character: bits per byte is the loss in bits. A trained model, so the
    per-token nats differ. Mutation killed: bytes summed over every target position,
    the tail window's masked ones (-1) too."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 20, 1000).astype(np.uint16)
    set_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(max_iters=5, eval_interval=5, eval_iters=2, batch_size=4, progress=False)
    result = Trainer(model, data[:800], data[800:], cfg, token_bytes=np.ones(20, int)).fit()
    assert result.val_bpb == pytest.approx(result.val_loss / math.log(2), rel=1e-12)
    assert result.best_val_bpb == pytest.approx(
        min(r["val_loss"] for r in result.history) / math.log(2), rel=1e-6
    )

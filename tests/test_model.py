"""The GPT across all 8 (rope, moe, fgram) variants: causality, learning, shapes, RoPE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nanomoe.model import apply_rope, rope_cache

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def window(ids: np.ndarray, start: int, batch: int, length: int) -> torch.Tensor:
    return torch.from_numpy(ids[start : start + batch * length].astype(np.int64)).view(
        batch, length
    )


def randomize_fgram_path(model) -> None:
    """The F-gram output projection starts at zero, which would hide any leak through it."""
    if model.config.fgram:
        torch.nn.init.normal_(model.fgram_ctx.out.weight, std=0.5)


def test_future_tokens_never_change_earlier_logits(tiny_model, tiny_splits, variant):
    model = tiny_model(variant, seed=3).eval()
    randomize_fgram_path(model)
    train, _ = tiny_splits
    idx = window(train, 0, 3, 16)
    if model.config.fgram:
        assert (model.fgram_match(idx) > 0).any()  # the F-gram path is exercised
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    with torch.no_grad():
        base, _ = model(idx)
        for t in range(16 - 1):
            changed = idx.clone()
            changed[:, t + 1 :] = torch.randint(0, vocab, (3, 16 - t - 1), generator=gen)
            logits, _ = model(changed)
            assert torch.allclose(logits[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-5), t
            if not torch.equal(changed[:, t + 1 :], idx[:, t + 1 :]):
                # control: the change is visible where it is allowed to be
                assert not torch.allclose(logits[:, t + 1 :], base[:, t + 1 :], atol=1e-5)


def test_every_variant_overfits_one_batch(tiny_model, tiny_splits, variant):
    model = tiny_model(variant, seed=0)
    train, _ = tiny_splits
    x, y = window(train, 100, 4, 16), window(train, 101, 4, 16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        _, loss = model(x, y)
        objective = loss + model.aux_loss if model.config.moe else loss
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        losses.append(loss.item())
    # Starts near log(vocab) (a uniform guess); memorizing 64 targets drives it far below.
    assert losses[0] == pytest.approx(np.log(model.config.vocab_size), rel=0.15)
    assert losses[-1] < 0.2 * losses[0]
    assert losses[-1] < 0.5


def test_logits_shape_and_optional_loss(tiny_model, tiny_splits, variant):
    model = tiny_model(variant).eval()
    idx = window(tiny_splits[0], 0, 2, 11)  # shorter than block_size
    logits, loss = model(idx)
    assert logits.shape == (2, 11, model.config.vocab_size)
    assert loss is None
    _, loss = model(idx, idx)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_targets_of_minus_one_are_ignored(tiny_model, tiny_splits):
    model = tiny_model(rope=True, moe=True, fgram=True).eval()
    x, y = window(tiny_splits[0], 0, 2, 16), window(tiny_splits[0], 1, 2, 16)
    masked = y.clone()
    masked[:, :5] = -1
    logits, loss = model(x, masked)
    expected = torch.nn.functional.cross_entropy(
        logits[:, 5:].reshape(-1, logits.size(-1)), y[:, 5:].reshape(-1)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_sequence_longer_than_block_size_is_rejected(tiny_model):
    model = tiny_model(rope=True)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    hs, T = 8, 32
    cos, sin = rope_cache(T, hs, 10000.0)
    q, k = torch.randn(hs), torch.randn(hs)

    def score(m: int, n: int) -> float:
        qm = apply_rope(q.view(1, 1, 1, hs), cos[m : m + 1], sin[m : m + 1]).flatten()
        kn = apply_rope(k.view(1, 1, 1, hs), cos[n : n + 1], sin[n : n + 1]).flatten()
        return float(qm @ kn)

    for m, n in [(5, 2), (9, 9), (3, 0)]:
        for shift in (1, 7, 20):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    # a rotation: norms are unchanged
    rotated = apply_rope(q.view(1, 1, 1, hs), cos[7:8], sin[7:8]).flatten()
    assert rotated.norm().item() == pytest.approx(q.norm().item(), rel=1e-5)


def test_rope_variant_has_no_position_embedding(tiny_model):
    assert tiny_model(rope=True).wpe is None
    assert tiny_model(rope=False).wpe is not None


def test_token_embedding_is_tied_to_the_output_head(tiny_model):
    model = tiny_model(moe=True, fgram=True)
    assert model.wte.weight is model.lm_head.weight


def test_same_seed_builds_the_same_weights(tiny_model, variant):
    a, b = tiny_model(variant, seed=5), tiny_model(variant, seed=5)
    c = tiny_model(variant, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_generate_appends_tokens_and_is_deterministic_per_generator(tiny_model):
    model = tiny_model(rope=True, moe=True, fgram=True).eval()
    prompt = torch.tensor([[1, 2, 3]])
    outs = [
        model.generate(prompt, 30, top_k=5, generator=torch.Generator().manual_seed(s))
        for s in (0, 0, 1)
    ]
    assert outs[0].shape == (1, 33)  # longer than block_size: the context is cropped
    assert torch.equal(outs[0][:, :3], prompt)
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])
    assert int(outs[0].max()) < model.config.vocab_size

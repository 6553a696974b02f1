"""The training loop: checkpoints, exact resume, determinism, LR schedule, non-finite loss,
final full-split eval, callbacks and weight-decay groups."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _configs import train_config

from nanomoe.checkpoint import load_checkpoint, model_from_checkpoint
from nanomoe.schedule import lr_at
from nanomoe.switches import baseline, full
from nanomoe.trainer import Callback, NonFiniteLossError, Trainer, TrainResult

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class Recorder(Callback):
    def __init__(self) -> None:
        self.evals: list[tuple[int, dict]] = []
        self.moe: list = []
        self.results: list[TrainResult] = []

    def on_eval(self, step, metrics, moe):
        self.evals.append((step, dict(metrics)))
        self.moe.append(moe)

    def on_end(self, result):
        self.results.append(result)


class StopAt(Callback):
    """Raises at the eval of ``step``, as an Optuna pruner or a crash would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_eval(self, step, metrics, moe):
        if step == self.step:
            raise KeyboardInterrupt(f"stopped at {step}")


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def batch(ids: np.ndarray, start: int = 0) -> torch.Tensor:
    return torch.from_numpy(ids[start : start + 64].astype(np.int64)).view(4, 16)


# --- checkpoints and resume --------------------------------------------------------------


@pytest.mark.parametrize("levels", [full(), baseline()], ids=["rope+moe+fgram", "dense"])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, tiny_model, tiny_splits, levels):
    train, val = tiny_splits
    model = tiny_model(levels, dropout=0.1)
    trainer = Trainer(
        model, train, val, train_config(max_iters=6), checkpoint_path=tmp_path / "c.pt"
    )
    trainer.fit()
    path = tmp_path / "explicit.pt"
    trainer.save_checkpoint(path)
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 6
    restored = model_from_checkpoint(ckpt).eval()
    model.eval()
    assert restored.config == model.config
    assert restored.fgram_ids == model.fgram_ids
    assert_same_state(model, restored)
    idx = batch(val, 0)
    with torch.no_grad():
        assert torch.equal(model(idx)[0], restored(idx)[0])
    # the checkpoint written by fit at the last eval is the same model
    with torch.no_grad():
        assert torch.equal(
            model_from_checkpoint(load_checkpoint(tmp_path / "c.pt")).eval()(idx)[0], model(idx)[0]
        )


def test_resume_equals_uninterrupted_training_bit_for_bit(
    tmp_path, tiny_model, tiny_splits, tiny_tokenizer
):
    """In nats and in bits per byte: the periodic val bpb before the resume point comes
    back from the checkpoint's history. Kills: the history (or its val_bpb) not restored."""
    train, val = tiny_splits
    flags = dict(rope=True, moe=True, fgram=True, dropout=0.2)
    cfg = train_config(max_iters=12, eval_interval=4)
    with_bpb = partial(Trainer, token_bytes=tiny_tokenizer.token_bytes())

    straight = tiny_model(**flags, seed=0)
    full = with_bpb(straight, train, val, cfg, checkpoint_path=tmp_path / "a.pt").fit()

    interrupted = tiny_model(**flags, seed=0)
    path = tmp_path / "b.pt"
    with pytest.raises(KeyboardInterrupt):
        with_bpb(interrupted, train, val, cfg, callbacks=[StopAt(8)], checkpoint_path=path).fit()
    assert load_checkpoint(path)["step"] == 8
    # the interrupted model is not yet the final one
    assert not all(
        torch.equal(v, straight.state_dict()[k]) for k, v in interrupted.state_dict().items()
    )

    fresh = tiny_model(**flags, seed=999)  # other weights: everything must come from the file
    recorder = Recorder()
    resumed = with_bpb(fresh, train, val, cfg, callbacks=[recorder], checkpoint_path=path).fit(
        resume_from=path
    )
    assert_same_state(straight, fresh)
    assert resumed.steps == full.steps == 12
    assert resumed.history == full.history
    assert [h["step"] for h in resumed.history] == [0, 4, 8, 12]
    assert all(math.isfinite(h["val_bpb"]) for h in resumed.history)
    assert resumed.val_loss == full.val_loss
    assert (resumed.val_bpb, resumed.best_val_bpb) == (full.val_bpb, full.best_val_bpb)
    assert resumed.train_loss == full.train_loss
    assert resumed.moe == full.moe
    assert [s for s, _ in recorder.evals] == [12]  # only the evals after the resume point
    tokens = load_checkpoint(path)["tokens"]  # throughput counts every session's steps
    assert tokens == 12 * cfg.batch_size * straight.config.block_size


def test_resume_restores_the_optimizer_state(tmp_path, tiny_model, tiny_splits):
    train, val = tiny_splits
    cfg = train_config(max_iters=4)
    trainer = Trainer(tiny_model(moe=True), train, val, cfg, checkpoint_path=tmp_path / "c.pt")
    trainer.fit()
    other = Trainer(tiny_model(moe=True, seed=4), train, val, cfg)
    other.resume(tmp_path / "c.pt")
    a, b = trainer.optimizer.state_dict()["state"], other.optimizer.state_dict()["state"]
    assert a.keys() == b.keys() and a
    for k in a:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a[k][name], b[k][name])
    assert other.step == 4


def test_same_seed_same_result_and_different_seed_differs(tiny_model, tiny_splits):
    train, val = tiny_splits
    flags = dict(rope=False, moe=True, fgram=True, dropout=0.2)
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        model = tiny_model(**flags, seed=0)  # same initial weights; only the trainer seed varies
        runs[name] = (model, Trainer(model, train, val, train_config(seed=seed, max_iters=8)).fit())
    (ma, ra), (mb, rb), (mc, rc) = runs["a"], runs["b"], runs["c"]
    assert_same_state(ma, mb)
    assert ra.history == rb.history and ra.val_loss == rb.val_loss
    assert not all(torch.equal(v, mc.state_dict()[k]) for k, v in ma.state_dict().items())
    assert ra.val_loss != rc.val_loss


def test_trainer_rejects_splits_not_longer_than_block_size(tiny_model, tiny_splits):
    train, _ = tiny_splits
    with pytest.raises(ValueError, match="val split"):
        Trainer(tiny_model(), train, train[:16], train_config())


# --- non-finite loss ---------------------------------------------------------------------


def test_non_finite_loss_stops_training_naming_the_step(monkeypatch, tiny_model, tiny_splits):
    train, val = tiny_splits
    model = tiny_model(moe=True)
    real_forward = model.forward
    calls = {"train": 0}

    def forward(idx, targets=None):
        logits, loss = real_forward(idx, targets)
        if model.training:
            calls["train"] += 1
            if calls["train"] == 4:  # the fourth training step is step 3
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(model, "forward", forward)
    trainer = Trainer(model, train, val, train_config(max_iters=10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"\bstep 3\b") as info:
        trainer.fit()
    assert info.value.step == 3
    assert trainer.step == 3  # no update was taken from the bad step
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_non_finite_weights_raise_at_step_0(tiny_model, tiny_splits):
    train, val = tiny_splits
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=r"step 0\b") as info:
        Trainer(model, train, val, train_config()).fit()
    assert info.value.step == 0


# --- learning-rate schedule --------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays_by_cosine_to_min_lr():
    cfg = train_config(max_iters=100, warmup_iters=10, learning_rate=1e-3, min_lr=1e-4)
    lrs = [lr_at(s, cfg) for s in range(0, 121)]
    warm = lrs[:11]
    assert all(b > a for a, b in zip(warm, warm[1:], strict=False))
    assert 0 < lrs[0] < 0.2 * cfg.learning_rate
    assert lrs[9] > 0.85 * cfg.learning_rate
    assert lrs[10] == pytest.approx(cfg.learning_rate)
    decay = lrs[10:101]
    assert all(b <= a for a, b in zip(decay, decay[1:], strict=False))
    assert all(cfg.min_lr <= v <= cfg.learning_rate for v in lrs[10:])
    assert lrs[100] == pytest.approx(cfg.min_lr)
    assert lrs[99] == pytest.approx(cfg.min_lr, abs=1e-6)
    assert all(v == cfg.min_lr for v in lrs[100:])
    # cosine: halfway through the decay the lr is halfway between the two ends
    assert lrs[55] == pytest.approx((cfg.learning_rate + cfg.min_lr) / 2)
    # the cosine is flat at both ends and steepest in the middle
    assert lrs[11] - lrs[12] < lrs[54] - lrs[56] and lrs[98] - lrs[99] < lrs[54] - lrs[56]


def test_lr_decay_iters_ends_the_decay_early_and_no_warmup_starts_at_the_peak():
    cfg = train_config(max_iters=100, warmup_iters=0, lr_decay_iters=40, min_lr=1e-4)
    assert lr_at(0, cfg) == pytest.approx(cfg.learning_rate)
    assert lr_at(40, cfg) == lr_at(70, cfg) == cfg.min_lr
    assert lr_at(20, cfg) == pytest.approx((cfg.learning_rate + cfg.min_lr) / 2)


def test_trainer_applies_the_schedule(tiny_model, tiny_splits):
    train, val = tiny_splits
    cfg = train_config(max_iters=8, eval_interval=2)
    trainer = Trainer(tiny_model(), train, val, cfg)
    result = trainer.fit()
    assert [h["lr"] for h in result.history] == [lr_at(s, cfg) for s in (0, 1, 3, 5, 7)]
    assert trainer.optimizer.param_groups[0]["lr"] == lr_at(7, cfg)


# --- final eval and callbacks ------------------------------------------------------------


def independent_full_split_loss(model, data: np.ndarray, block: int) -> float:
    """Mean cross-entropy over every target of ``data``: non-overlapping windows from the
    start, then one window aligned to the end that scores only targets not yet scored."""
    ids = [int(v) for v in data]
    n = len(ids) - 1
    total, count, start = 0.0, 0, 0
    windows = []
    while start + block <= n:
        windows.append((start, 0))
        start += block
    if start < n:
        windows.append((n - block, start - (n - block)))
    model.eval()
    with torch.no_grad():
        for s, skip in windows:
            x = torch.tensor([ids[s : s + block]])
            y = torch.tensor(ids[s + 1 : s + block + 1])
            logits, _ = model(x)
            ce = F.cross_entropy(logits[0].double(), y, reduction="none")
            total += float(ce[skip:].sum())
            count += block - skip
    assert count == n
    return total / count


def test_final_val_loss_is_the_mean_over_every_val_target(tiny_model, tiny_splits):
    train, val = tiny_splits
    assert (len(val) - 1) % 16 != 0  # the tail window is exercised
    model = tiny_model(rope=True, moe=True, fgram=True, dropout=0.1)
    result = Trainer(model, train, val, train_config(max_iters=6)).fit()
    expected = independent_full_split_loss(model, val, model.config.block_size)
    assert result.val_loss == pytest.approx(expected, rel=1e-5)
    # it differs from the fixed-batch estimate that the history holds
    assert result.val_loss != result.history[-1]["val_loss"]


def test_callbacks_receive_each_eval_and_the_result(tiny_model, tiny_splits):
    train, val = tiny_splits
    rec = Recorder()
    model = tiny_model(moe=True)
    cfg = train_config(max_iters=10, eval_interval=4)
    result = Trainer(model, train, val, cfg, callbacks=[rec]).fit()
    assert [s for s, _ in rec.evals] == [0, 4, 8, 10]
    for (step, metrics), hist in zip(rec.evals, result.history, strict=True):
        assert hist["step"] == step
        assert metrics["val_loss"] == hist["val_loss"] and math.isfinite(metrics["val_loss"])
        assert metrics["train_loss"] == hist["train_loss"]
        assert "lr" in metrics and "tokens_per_sec" in metrics
    assert rec.moe[0] is None  # no training step yet
    assert all(len(moe.load) == model.config.n_layer for moe in rec.moe[1:])
    assert rec.results == [result]
    assert result.steps == 10
    assert result.train_loss == result.history[-1]["train_loss"]
    assert (result.params_total, result.params_active) == model.num_params()
    assert result.moe == rec.moe[-1]  # the last interval's training routing


# --- weight decay ------------------------------------------------------------------------


def expected_no_decay(model) -> set[str]:
    """Names of the parameters that must not be decayed: norms, biases, embeddings."""
    names = set()
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(module, torch.nn.LayerNorm | torch.nn.Embedding):
                names.add(full)
            elif p_name.startswith("b_") or p_name == "bias" or p_name == "slot_emb":
                names.add(full)
    return names


def check_decay_groups(trainer: Trainer, weight_decay: float) -> None:
    model = trainer.model
    name_of = {id(p): n for n, p in model.named_parameters()}
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2
    by_wd = {g["weight_decay"]: {name_of[id(p)] for p in g["params"]} for g in groups}
    assert set(by_wd) == {weight_decay, 0.0}
    decayed, not_decayed = by_wd[weight_decay], by_wd[0.0]
    assert not decayed & not_decayed
    assert decayed | not_decayed == set(name_of.values())
    assert not_decayed == expected_no_decay(model)
    assert "wte.weight" in not_decayed  # tied with lm_head: an embedding, not decayed
    assert any(n.endswith("c_attn.weight") for n in decayed)


def test_weight_decay_skips_norms_biases_and_embeddings(tiny_model, tiny_splits, variant):
    train, val = tiny_splits
    model = tiny_model(variant)
    check_decay_groups(Trainer(model, train, val, train_config(weight_decay=0.25)), 0.25)


@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
def test_weight_decay_skips_biases_with_bias_on(tiny_model, tiny_splits, moe):
    train, val = tiny_splits
    model = tiny_model(rope=True, moe=moe, fgram=True, bias=True)
    check_decay_groups(Trainer(model, train, val, train_config(weight_decay=0.1)), 0.1)


def test_resume_from_the_step_0_checkpoint_equals_uninterrupted_training(
    tmp_path, tiny_model, tiny_splits
):
    train, val = tiny_splits
    cfg = train_config(max_iters=8)
    full = Trainer(tiny_model(moe=True), train, val, cfg).fit()
    path = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_model(moe=True), train, val, cfg, [StopAt(0)], checkpoint_path=path).fit()
    assert load_checkpoint(path)["step"] == 0
    resumed = Trainer(tiny_model(moe=True, seed=3), train, val, cfg).fit(resume_from=path)
    assert resumed.history == full.history

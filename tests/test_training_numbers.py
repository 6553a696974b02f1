"""The numbers a cell reports: MoE statistics measured on the training steps of each eval
interval (never on eval batches), and the best periodic val estimate beside the final one."""

from __future__ import annotations

import pytest
import torch

from nanomoe.checkpoint import load_checkpoint
from nanomoe.config import TrainConfig
from nanomoe.trainer import Callback, Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def train_config(**overrides) -> TrainConfig:
    kw = dict(batch_size=4, max_iters=10, learning_rate=3e-3, min_lr=3e-4, warmup_iters=2,
              eval_interval=4, eval_iters=2, seed=5, device="cpu", progress=False)  # fmt: skip
    return TrainConfig(**{**kw, **overrides})


class MoEAtEval(Callback):
    def __init__(self) -> None:
        self.stats: dict[int, object] = {}

    def on_eval(self, step, metrics, moe):
        self.stats[step] = moe


class RouterProbe:
    """Recomputes each MoE layer's routing from the layer's input with forward hooks, apart
    from moe.py's own bookkeeping: per training forward, per layer, the expert load, the
    Switch load-balance loss and the z-loss. Eval forwards (model.eval()) are not recorded."""

    def __init__(self, model) -> None:
        self.steps: list[list[tuple[torch.Tensor, float, float]]] = []
        self.layers = [block.mlp for block in model.blocks]
        for layer in self.layers:
            layer.register_forward_hook(self.record)

    def record(self, layer, inputs, output) -> None:
        if not layer.training:
            return
        x = inputs[0].detach().reshape(-1, inputs[0].size(-1))
        logits = (x @ layer.router.weight.detach().T).double()
        probs = logits.softmax(-1)
        chosen = probs.topk(layer.top_k, dim=-1).indices.flatten()
        load = torch.bincount(chosen, minlength=layer.n_experts).double() / chosen.numel()
        lb = layer.n_experts * float((load * probs.mean(0)).sum())
        z = float(torch.logsumexp(logits, -1).pow(2).mean())
        if layer is self.layers[0]:
            self.steps.append([])
        self.steps[-1].append((load, lb, z))

    def interval(self, first: int, last: int):
        """Mean over training steps first..last (1-based, inclusive): per-layer loads, and
        the two losses summed over layers, as the trainer reports them."""
        steps = self.steps[first - 1 : last]
        n_layer = len(steps[0])
        load = [torch.stack([s[i][0] for s in steps]).mean(0).tolist() for i in range(n_layer)]
        lb = sum(sum(s[i][1] for s in steps) / len(steps) for i in range(n_layer))
        z = sum(sum(s[i][2] for s in steps) / len(steps) for i in range(n_layer))
        return load, lb, z


def test_moe_stats_at_each_eval_are_the_mean_over_that_intervals_training_batches(
    tiny_model, tiny_splits
):
    train, val = tiny_splits
    model = tiny_model(moe=True, fgram=True, top_k=2)
    probe, seen = RouterProbe(model), MoEAtEval()
    result = Trainer(model, train, val, train_config(), callbacks=[seen]).fit()
    assert len(probe.steps) == 10  # one recorded forward per training step
    assert seen.stats[0] is None  # no training step before the first eval
    for step, (first, last) in {4: (1, 4), 8: (5, 8), 10: (9, 10)}.items():
        load, lb, z = probe.interval(first, last)
        stats = seen.stats[step]
        flat = [v for layer in stats.load for v in layer]
        assert flat == pytest.approx([v for layer in load for v in layer], abs=1e-9), step
        assert stats.lb_loss == pytest.approx(lb, rel=1e-5), step
        assert stats.z_loss == pytest.approx(z, rel=1e-5), step
    # what metrics.json reports is the final training interval, not the last eval forward
    assert result.moe == seen.stats[10]
    assert result.moe.load != model.moe_stats().load  # the full-split pass routes otherwise


def test_resume_from_the_final_checkpoint_reports_the_same_moe_stats(
    tmp_path, tiny_model, tiny_splits
):
    train, val = tiny_splits
    path = tmp_path / "ckpt.pt"
    first = Trainer(tiny_model(moe=True), train, val, train_config(), checkpoint_path=path).fit()
    assert load_checkpoint(path)["interval_moe"]["load"] == first.moe.load
    again = Trainer(tiny_model(moe=True, seed=3), train, val, train_config()).fit(resume_from=path)
    assert again.moe == first.moe and again.steps == first.steps


def test_routing_mid_interval_is_saved_and_restored(tmp_path, tiny_model, tiny_splits):
    train, val = tiny_splits
    cfg = train_config(max_iters=12, eval_interval=4)
    trainer = Trainer(tiny_model(moe=True), train, val, cfg)
    for _ in range(6):  # six steps with no eval: a checkpoint taken mid-interval
        trainer.train_step(1e-3)
    assert trainer.routing.steps == 6
    path = tmp_path / "mid.pt"
    trainer.save_checkpoint(path)
    restored = Trainer(tiny_model(moe=True), train, val, cfg)
    restored.resume(path)
    assert restored.routing.steps == 6
    assert torch.equal(restored.routing.total, trainer.routing.total)
    assert restored.routing.mean() == trainer.routing.mean()


def test_best_val_loss_is_the_lowest_periodic_estimate_before_overfitting(tiny_model, tiny_splits):
    train, val = tiny_splits
    cfg = train_config(max_iters=400, eval_interval=25, batch_size=16, learning_rate=1e-2,
                       min_lr=1e-2, warmup_iters=10, eval_iters=4)  # fmt: skip
    result = Trainer(tiny_model(n_embd=64), train, val, cfg).fit()
    estimates = {h["step"]: h["val_loss"] for h in result.history}
    lowest = min(estimates, key=estimates.get)
    assert (result.best_step, result.best_val_loss) == (lowest, estimates[lowest])
    assert 0 < result.best_step < result.steps  # it overfit: the last eval is not the best
    assert result.best_val_loss < estimates[result.steps]
    assert result.best_val_loss < result.val_loss  # final: the full split, at the end

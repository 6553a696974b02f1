"""torch.compile: every variant, the MoE included, traces to one graph that computes what
eager computes, forward and backward, and never recompiles as the routing changes; the
grouped matmul under it equals a loop over the experts, on both of its kernels.

Tiny models; the 8-variant check traces through AOTAutograd (``aot_eager``: the graph and
backward inductor would receive, without its C++ build), and the full model also compiles
with inductor itself."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch._dynamo
from _configs import train_config
from torch._dynamo.testing import CompileCounterWithBackend

from nanomoe.grouped import expert_loop, grouped_mm
from nanomoe.switches import full
from nanomoe.trainer import Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def loss_and_grads(model, forward, idx, targets):
    model.zero_grad(set_to_none=True)
    logits, loss = forward(idx, targets)
    objective = loss + model.aux_loss if model.config.moe else loss
    objective.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), loss.detach(), grads


def assert_compiled_equals_eager(model, backend: str, tiny_splits) -> None:
    train, _ = tiny_splits
    gen = torch.Generator().manual_seed(0)
    ix = torch.randint(len(train) - 17, (4,), generator=gen)
    data = torch.from_numpy(train.astype("int64"))
    idx = torch.stack([data[i : i + 16] for i in ix])
    targets = torch.stack([data[i + 1 : i + 17] for i in ix])
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    logits_e, loss_e, grads_e = loss_and_grads(model, model, idx, targets)
    logits_c, loss_c, grads_c = loss_and_grads(model, compiled, idx, targets)
    assert counter.frame_count == 1  # one graph: fullgraph would have raised at a break
    torch.testing.assert_close(logits_c, logits_e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    assert grads_c.keys() == grads_e.keys() and grads_e
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-4, atol=1e-6, msg=name)


def test_every_variant_compiles_to_one_graph_matching_eager_forward_and_backward(
    tiny_model, tiny_splits, variant
):
    model = tiny_model(variant, n_layer=1)
    assert_compiled_equals_eager(model, "aot_eager", tiny_splits)


def test_the_full_model_compiles_with_inductor_and_matches_eager(tiny_model, tiny_splits):
    model = tiny_model(full(), n_layer=1, top_k=1)
    assert_compiled_equals_eager(model, "inductor", tiny_splits)


def test_training_compiled_never_recompiles_as_the_routing_changes(
    monkeypatch, tiny_model, tiny_splits
):
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real_compile(m, backend=counter, **kw))
    model = tiny_model(full(), n_layer=1)
    cfg = train_config(max_iters=50, eval_interval=50, learning_rate=1e-2, compile=True)
    trainer = Trainer(model, *tiny_splits, cfg)
    loads = []
    for _ in range(50):
        trainer.train_step(1e-2)
        loads.append(model.blocks[0].mlp.load.clone())
    assert counter.frame_count == 1
    changed = sum(not torch.equal(a, b) for a, b in zip(loads, loads[1:], strict=False))
    assert changed >= 25, f"the routing changed on only {changed} of 49 steps"


# --- the grouped matmul -------------------------------------------------------------------


def loop_mm(a, b, ends):
    out, start = [], 0
    for e, end in enumerate(ends.tolist()):
        out.append(a[start:end] @ b[e])
        start = end
    return torch.cat(out)


@pytest.mark.parametrize("native", [True, False], ids=["grouped-kernel", "expert-loop"])
@pytest.mark.parametrize("shape", [(8, 16), (6, 12)], ids=["aligned", "padded"])
def test_grouped_mm_equals_a_loop_over_experts_with_empty_experts(native, shape):
    with contextlib.nullcontext() if native else expert_loop():
        check_grouped_mm(*shape)


def check_grouped_mm(K: int, N: int) -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(11, K, generator=gen, requires_grad=True)
    b = torch.randn(4, K, N, generator=gen, requires_grad=True)
    ends = torch.tensor([3, 3, 11, 11], dtype=torch.int32)  # experts 1 and 3 get no rows
    up = torch.randn(11, N, generator=gen)
    got = grouped_mm(a, b, ends)
    (got * up).sum().backward()
    ga, gb = a.grad.clone(), b.grad.clone()
    a.grad, b.grad = None, None
    want = loop_mm(a, b, ends)
    (want * up).sum().backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(ga, a.grad)
    torch.testing.assert_close(gb, b.grad)
    assert gb[1].abs().sum() == 0 and gb[3].abs().sum() == 0

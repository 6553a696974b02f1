"""Mixture of experts: the two auxiliary losses against hand computations, routing and
dispatch against a per-token loop, gradients, load statistics and parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nanomoe.config import GPTConfig
from nanomoe.moe import MoE, MoEStats, load_balance_loss, router_z_loss

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def moe_layer(n_embd=8, n_experts=4, top_k=2, bias=False, seed=0) -> MoE:
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=n_embd,
        moe=True, n_experts=n_experts, top_k=top_k, bias=bias,
    )  # fmt: skip
    return MoE(cfg).eval()


def hand_softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def hand_load_balance(probs: list[list[float]], chosen: list[list[int]], n_experts: int):
    n_tokens, k = len(chosen), len(chosen[0])
    total = 0.0
    for i in range(n_experts):
        f_i = sum(1 for row in chosen for e in row if e == i) / (n_tokens * k)
        p_i = sum(probs[t][i] for t in range(n_tokens)) / n_tokens
        total += f_i * p_i
    return n_experts * total


def hand_z_loss(logits: list[list[float]]) -> float:
    total = 0.0
    for row in logits:
        lse = math.log(sum(math.exp(v) for v in row))
        total += lse * lse
    return total / len(logits)


def expert_forward(layer: MoE, e: int, x: torch.Tensor) -> torch.Tensor:
    h = x @ layer.w_fc[e]
    if layer.b_fc is not None:
        h = h + layer.b_fc[e]
    y = F.gelu(h) @ layer.w_proj[e]
    return y + layer.b_proj[e] if layer.b_proj is not None else y


# --- the losses --------------------------------------------------------------------------


def test_load_balance_loss_equals_hand_computation():
    probs = [
        [0.70, 0.20, 0.10],
        [0.10, 0.60, 0.30],
        [0.25, 0.25, 0.50],
        [0.40, 0.35, 0.25],
    ]
    chosen = [[0, 1], [1, 2], [2, 0], [0, 1]]
    got = load_balance_loss(torch.tensor(probs), torch.tensor(chosen), 3)
    assert got.item() == pytest.approx(hand_load_balance(probs, chosen, 3), rel=1e-6)
    # top-1, with one expert never chosen
    chosen1 = [[0], [1], [1], [0]]
    got1 = load_balance_loss(torch.tensor(probs), torch.tensor(chosen1), 3)
    assert got1.item() == pytest.approx(hand_load_balance(probs, chosen1, 3), rel=1e-6)


def test_load_balance_loss_is_one_when_probs_are_uniform_and_grows_with_imbalance():
    uniform = torch.full((6, 4), 0.25)
    for chosen in ([[0], [1], [2], [3], [0], [1]], [[0], [0], [0], [0], [0], [0]]):
        assert load_balance_loss(uniform, torch.tensor(chosen), 4).item() == pytest.approx(1.0)
    collapsed = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 6)
    everything_on_0 = torch.zeros(6, 1, dtype=torch.long)
    assert load_balance_loss(collapsed, everything_on_0, 4).item() == pytest.approx(4 * 0.97)


def test_router_z_loss_equals_hand_computation():
    logits = [[1.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0], [-1.5, 2.5, 0.25, -0.75]]
    got = router_z_loss(torch.tensor(logits))
    assert got.item() == pytest.approx(hand_z_loss(logits), rel=1e-6)
    assert router_z_loss(torch.zeros(5, 4)).item() == pytest.approx(math.log(4) ** 2)


def test_moe_layer_losses_and_load_equal_the_formulas_on_its_router_output():
    layer = moe_layer(n_embd=4, n_experts=3, top_k=2)
    with torch.no_grad():
        layer.router.weight.copy_(
            torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, -0.5], [-1.0, 0.5, 1.0, 0.0]])
        )
    x = torch.tensor(
        [
            [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],
            [[0.0, 0.0, 1.0, 1.0], [0.5, -0.5, 2.0, 0.0]],
        ]
    )
    layer(x)
    W = layer.router.weight.tolist()
    tokens = x.reshape(-1, 4).tolist()
    logits = [
        [sum(w * v for w, v in zip(W[e], tok, strict=True)) for e in range(3)] for tok in tokens
    ]
    probs = [hand_softmax(row) for row in logits]
    chosen = [sorted(range(3), key=lambda e, p=p: -p[e])[:2] for p in probs]
    assert layer.lb_loss.item() == pytest.approx(hand_load_balance(probs, chosen, 3), rel=1e-5)
    assert layer.z_loss.item() == pytest.approx(hand_z_loss(logits), rel=1e-5)
    load = [sum(row.count(e) for row in chosen) / 8 for e in range(3)]
    assert layer.load.tolist() == pytest.approx(load)


def test_model_aux_loss_is_the_weighted_sum_of_layer_losses(tiny_model, tiny_splits):
    model = tiny_model(moe=True, aux_loss_coef=0.3, z_loss_coef=0.07)
    idx = torch.from_numpy(tiny_splits[0][:48].astype("int64")).view(3, 16)
    model(idx)
    moes = [b.mlp for b in model.blocks]
    expected = sum(0.3 * m.lb_loss.item() + 0.07 * m.z_loss.item() for m in moes)
    assert model.aux_loss.item() == pytest.approx(expected, rel=1e-6)
    assert model.aux_loss.item() > 0
    stats = model.moe_stats()
    assert stats.lb_loss == pytest.approx(sum(m.lb_loss.item() for m in moes))
    assert stats.z_loss == pytest.approx(sum(m.z_loss.item() for m in moes))


# --- routing and dispatch ----------------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_moe_output_equals_a_per_token_loop_over_its_top_k_experts(top_k, bias):
    layer = moe_layer(n_embd=8, n_experts=4, top_k=top_k, bias=bias, seed=top_k)
    with torch.no_grad():
        layer.router.weight.normal_(std=1.0)
        if bias:
            layer.b_fc.normal_(std=0.1)
            layer.b_proj.normal_(std=0.1)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        got = layer(x)
        expected = torch.zeros(10, 8)
        for t, tok in enumerate(x.reshape(-1, 8)):
            p = torch.softmax(layer.router.weight @ tok, dim=-1)
            chosen = sorted(range(4), key=lambda e, p=p: -float(p[e]))[:top_k]
            norm = sum(float(p[e]) for e in chosen) if top_k > 1 else 1.0  # Switch: gate = p
            for e in chosen:
                expected[t] += float(p[e]) / norm * expert_forward(layer, e, tok[None])[0]
    assert torch.allclose(got.reshape(-1, 8), expected, atol=1e-6)


@pytest.mark.parametrize("top_k", [2, 4])
def test_identical_experts_give_one_experts_output_whatever_the_router_says(top_k):
    layer = moe_layer(n_embd=8, n_experts=4, top_k=top_k, bias=True)
    with torch.no_grad():
        layer.b_fc.normal_(std=0.1)
        layer.b_proj.normal_(std=0.1)
        for p in (layer.w_fc, layer.w_proj, layer.b_fc, layer.b_proj):
            p.copy_(p[:1].expand_as(p))
    x = torch.randn(3, 6, 8)
    for router_std in (0.01, 1.0, 10.0):
        with torch.no_grad():
            layer.router.weight.normal_(std=router_std)
            got = layer(x)
            expected = expert_forward(layer, 0, x.reshape(-1, 8)).view(3, 6, 8)
        assert torch.allclose(got, expected, atol=1e-6)


def test_top1_gate_is_the_raw_router_probability_so_the_router_learns_from_the_lm():
    layer = moe_layer(n_embd=8, n_experts=4, top_k=1, bias=False)
    with torch.no_grad():
        for p in (layer.w_fc, layer.w_proj):
            p.copy_(p[:1].expand_as(p))
        layer.router.weight.normal_(std=1.0)
    x = torch.randn(3, 6, 8)
    with torch.no_grad():
        got = layer(x).reshape(-1, 8)
        p_max = torch.softmax(x.reshape(-1, 8) @ layer.router.weight.T, dim=-1).max(-1).values
        expected = p_max[:, None] * expert_forward(layer, 0, x.reshape(-1, 8))
    assert torch.allclose(got, expected, atol=1e-6)
    assert (p_max < 1).all()


def test_expert_load_fractions_sum_to_one_per_layer(tiny_model, tiny_splits):
    for top_k in (1, 2, 3):
        model = tiny_model(rope=True, moe=True, fgram=True, top_k=top_k)
        idx = torch.from_numpy(tiny_splits[0][:64].astype("int64")).view(4, 16)
        model(idx)
        stats = model.moe_stats()
        assert len(stats.load) == model.config.n_layer
        for loads in stats.load:
            assert len(loads) == model.config.n_experts
            assert all(0.0 <= v <= 1.0 for v in loads)
            assert sum(loads) == pytest.approx(1.0, abs=1e-6)


def test_moe_stats_is_none_without_moe(tiny_model):
    assert tiny_model(moe=False).moe_stats() is None


def test_moe_stats_flatten_to_one_named_metric_per_layer_and_expert():
    stats = MoEStats(lb_loss=1.5, z_loss=0.25, load=[[0.75, 0.25], [0.5, 0.5]])
    assert stats.as_metrics() == {
        "lb_loss": 1.5,
        "z_loss": 0.25,
        "load_l0_e0": 0.75,
        "load_l0_e1": 0.25,
        "load_l1_e0": 0.5,
        "load_l1_e1": 0.5,
    }


# --- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "top_k",
    [1, 2, 3],
)
def test_router_receives_gradient_from_the_lm_loss_alone(tiny_model, tiny_splits, top_k):
    model = tiny_model(moe=True, top_k=top_k)
    x = torch.from_numpy(tiny_splits[0][:64].astype("int64")).view(4, 16)
    y = torch.from_numpy(tiny_splits[0][1:65].astype("int64")).view(4, 16)
    _, loss = model(x, y)
    loss.backward()  # the cross-entropy only, not model.aux_loss
    for block in model.blocks:
        grad = block.mlp.router.weight.grad
        assert grad is not None
        # well above float noise relative to the weights' own gradient scale
        assert grad.abs().max().item() > 1e-6
    assert model.blocks[0].mlp.w_fc.grad.abs().max().item() > 0


def test_aux_loss_gives_the_router_gradient(tiny_model, tiny_splits):
    model = tiny_model(moe=True, top_k=1)
    x = torch.from_numpy(tiny_splits[0][:64].astype("int64")).view(4, 16)
    model(x)
    model.aux_loss.backward()
    for block in model.blocks:
        assert block.mlp.router.weight.grad.abs().max().item() > 1e-6


# --- the model-level contract ------------------------------------------------------------


def test_loss_is_pure_cross_entropy_even_with_moe(tiny_model, tiny_splits):
    model = tiny_model(rope=True, moe=True, fgram=True, aux_loss_coef=1.0, z_loss_coef=1.0)
    x = torch.from_numpy(tiny_splits[0][:64].astype("int64")).view(4, 16)
    y = torch.from_numpy(tiny_splits[0][1:65].astype("int64")).view(4, 16)
    logits, loss = model(x, y)
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    assert model.aux_loss.item() > 0.1  # large enough that including it would show
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6)


def test_aux_loss_is_zero_without_moe(tiny_model, tiny_splits):
    model = tiny_model(rope=True, moe=False, fgram=True)
    x = torch.from_numpy(tiny_splits[0][:64].astype("int64")).view(4, 16)
    model(x, x)
    assert float(model.aux_loss) == 0.0


def test_active_params_below_total_with_moe_and_equal_without(tiny_model):
    for rope in (False, True):
        for fgram in (False, True):
            dense = tiny_model(rope=rope, moe=False, fgram=fgram)
            total, active = dense.num_params()
            assert total == active == sum(p.numel() for p in dense.parameters())
            for top_k in (1, 2, 4):
                moe = tiny_model(rope=rope, moe=True, fgram=fgram, top_k=top_k)
                m_total, m_active = moe.num_params()
                assert m_total == sum(p.numel() for p in moe.parameters())
                assert m_active < m_total or top_k == moe.config.n_experts
                # Experts are 4*n_embd/top_k wide: the active feed-forward matches the dense
                # MLP, so active = dense + the routers.
                c = moe.config
                assert m_active == total + c.n_layer * c.n_embd * c.n_experts

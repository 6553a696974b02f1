"""Top-k routed Mixture-of-Experts feed-forward, with its two auxiliary losses.

Routing: a linear router scores every expert; the softmax runs in fp32; each token goes to
its top-k experts with gate weights renormalized over the chosen k. The gate multiplies the
expert's output, which is how the router receives gradient from the language-model loss.
With top_k = 1 the gate is the raw probability, as in the Switch Transformer: renormalizing a
single weight would make it exactly 1 and leave the router to learn from the aux losses alone.

Dispatch is one grouped matrix multiply per projection (``grouped.py``): the (token, expert)
assignments are sorted by expert, so every expert sees one contiguous slice of rows, which
the grouped matmul multiplies by that expert's weights. Every shape is static (N*k rows
whatever the routing), so ``torch.compile(fullgraph=True)`` traces it in one graph and never
recompiles as the routing changes, and no step waits on the host for the expert counts. No
token is dropped and no expert computes a token it was not routed to.

Routing runs in fp32 with autocast off, the router's matmul included. Under autocast the
experts run in its dtype (bf16), cast here because autocast does not cover grouped matmuls.

In data-parallel training (``torch.distributed`` initialized) the load-balance loss uses the
routing fractions and mean probabilities of the global batch: counts summed over ranks, and
probabilities summed with a differentiable all-reduce, so it equals the one-process loss.

Each expert's hidden width is ``4 * n_embd // top_k``, so the *active* feed-forward width per
token equals the dense MLP's: MoE variants are compared with dense at matched active
parameters and FLOPs, and differ only in total capacity.

Losses (both computed in fp32, reported unweighted, weighted by their coefficients in
``aux_loss``):

- load balance (Switch Transformer): ``n_experts * sum_i f_i * P_i`` with ``f_i`` the fraction
  of assignments routed to expert i and ``P_i`` the mean router probability of expert i;
  1.0 when perfectly balanced.
- router z-loss (ST-MoE): ``mean(logsumexp(router_logits) ** 2)``, which keeps logits small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanomoe.config import GPTConfig
from nanomoe.distributed import global_sum, is_distributed
from nanomoe.grouped import grouped_mm


@dataclass(frozen=True)
class MoEStats:
    """Routing statistics of a model's MoE layers, as values (not formatted names)."""

    lb_loss: float  # unweighted load-balance loss, summed over layers
    z_loss: float  # unweighted router z-loss, summed over layers
    load: list[list[float]]  # [layer][expert]: share of the token-to-expert assignments

    @classmethod
    def from_routing(cls, routing: torch.Tensor) -> MoEStats:
        """From a ``(n_layer, 2 + n_experts)`` routing tensor (see ``MoE.routing``): the two
        losses summed over layers, the loads per layer."""
        rows = routing.double().cpu()
        return cls(
            lb_loss=float(rows[:, 0].sum()),
            z_loss=float(rows[:, 1].sum()),
            load=rows[:, 2:].tolist(),
        )

    def as_metrics(self) -> dict[str, float]:
        """Flat scalars for a metrics logger: ``lb_loss``, ``z_loss``, ``load_l<i>_e<j>``."""
        out = {"lb_loss": self.lb_loss, "z_loss": self.z_loss}
        for layer, loads in enumerate(self.load):
            out.update({f"load_l{layer}_e{e}": frac for e, frac in enumerate(loads)})
        return out


class RoutingMeter:
    """Sums the routing of every training step since the last ``reset``; ``mean()`` is what
    the trainer reports at each eval. The sum stays on the model's device (no sync per step)
    and goes into checkpoints with ``state_dict``, so a resumed run reports the same means."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.steps = 0

    def add(self, routing: torch.Tensor | None) -> None:
        """One training step's ``GPT.routing()``; None (a dense model) adds nothing."""
        if routing is None:
            return
        routing = routing.detach().double()
        self.total = routing if self.total is None else self.total + routing
        self.steps += 1

    def mean(self) -> MoEStats | None:
        """Mean over the steps since the last reset; None if there were none."""
        if self.total is None or self.steps == 0:
            return None
        return MoEStats.from_routing(self.total / self.steps)

    def reset(self) -> None:
        self.total, self.steps = None, 0

    def state_dict(self) -> dict:
        total = None if self.total is None else self.total.cpu()
        return {"total": total, "steps": self.steps}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        total = state["total"]
        self.total = None if total is None else total.to(device)
        self.steps = int(state["steps"])


def load_balance_loss(
    probs: torch.Tensor, topk_idx: torch.Tensor, n_experts: int, over_ranks: bool = False
) -> torch.Tensor:
    """``probs`` (N, E) router softmax, ``topk_idx`` (N, k) chosen experts. ``over_ranks``:
    under data parallelism, over the global batch, every rank taking part (training does;
    evaluation, where ranks may run different numbers of forwards, does not)."""
    flat = topk_idx.flatten()
    counts = torch.zeros(n_experts, dtype=probs.dtype, device=probs.device)
    counts = counts.scatter_add(0, flat, torch.ones_like(flat, dtype=probs.dtype))
    prob_sum = probs.sum(dim=0)
    n_tokens = torch.tensor(float(probs.shape[0]), device=probs.device)
    if over_ranks and is_distributed():  # global f and P: counts need no gradient, probabilities do
        counts, n_tokens = global_sum(counts.detach()), global_sum(n_tokens)
        prob_sum = global_sum(prob_sum, differentiable=True)
    f = counts / (n_tokens * topk_idx.shape[-1])
    p = prob_sum / n_tokens
    return n_experts * (f * p).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give a matmul of ``x``: its dtype when autocast is off."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class MoE(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        E, C = config.n_experts, config.n_embd
        H = max(1, 4 * C // config.top_k)
        self.n_experts, self.top_k = E, config.top_k
        self.router = nn.Linear(C, E, bias=False)
        self.w_fc = nn.Parameter(torch.empty(E, C, H))
        self.w_proj = nn.Parameter(torch.empty(E, H, C))
        self.b_fc = nn.Parameter(torch.zeros(E, H)) if config.bias else None
        self.b_proj = nn.Parameter(torch.zeros(E, C)) if config.bias else None
        self.dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.w_fc, std=0.02)
        nn.init.normal_(self.w_proj, std=0.02 / math.sqrt(2 * config.n_layer))
        # Filled by every forward; read by the model and the trainer.
        self.lb_loss = torch.zeros(())
        self.z_loss = torch.zeros(())
        self.load = torch.zeros(E)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        flat = x.reshape(-1, C)  # (N, C)
        with torch.autocast(x.device.type, enabled=False):  # fp32 routing, matmul included
            logits = F.linear(flat.float(), self.router.weight.float())  # (N, E)
        probs = logits.softmax(dim=-1)
        gate, expert = probs.topk(self.top_k, dim=-1)  # (N, k)
        if self.top_k > 1:  # renormalize over the chosen k; with k = 1 that would be p/p = 1
            gate = gate / gate.sum(dim=-1, keepdim=True)  # and cut the router off from the LM loss

        # Sort the N*k assignments by expert: each expert gets a contiguous slice of rows.
        expert_flat = expert.flatten()
        order = torch.argsort(expert_flat, stable=True)
        token = order // self.top_k  # which token each sorted assignment came from
        ones = torch.ones_like(expert_flat)
        counts = expert_flat.new_zeros(self.n_experts).scatter_add(0, expert_flat, ones)
        ends = counts.cumsum(0).to(torch.int32)  # where each expert's slice ends
        dtype = compute_dtype(x)
        xs = flat[token].to(dtype)  # (N*k, C)
        h = grouped_mm(xs, self.w_fc.to(dtype), ends)  # (N*k, H)
        if self.b_fc is not None:
            h = h + self.b_fc.to(dtype)[expert_flat[order]]
        ys = grouped_mm(F.gelu(h), self.w_proj.to(dtype), ends)  # (N*k, C)
        if self.b_proj is not None:
            ys = ys + self.b_proj.to(dtype)[expert_flat[order]]
        ys = ys.to(flat.dtype) * gate.flatten()[order].unsqueeze(-1).to(flat.dtype)
        y = torch.zeros_like(flat).index_add_(0, token, ys)

        self.lb_loss = load_balance_loss(probs, expert, self.n_experts, over_ranks=self.training)
        self.z_loss = router_z_loss(logits)
        self.load = (counts.float() / expert_flat.numel()).detach()
        return self.dropout(y.view(B, T, C))

    def routing(self) -> torch.Tensor:
        """The last forward's routing as one detached row: lb loss, z loss, expert loads."""
        losses = torch.stack([self.lb_loss.detach(), self.z_loss.detach()]).float()
        return torch.cat([losses, self.load.float()])

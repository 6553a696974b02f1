"""NanoMoE: a GPT with three switches, RoPE, MoE and F-grams, over any tokenizer's ids.

Read top to bottom: attention (RoPE or learned positions), the dense MLP, the block, then the
GPT that wires in the MoE feed-forward (``moe.py``) and the F-gram embedding (``fgram.py``).
With every switch off this is nanoGPT's model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanomoe.config import GPTConfig
from nanomoe.fgram import Fgram, FgramContextualizer, FgramMatcher
from nanomoe.moe import MoE, MoEStats

__all__ = ["GPT", "GPTConfig"]


def rope_cache(block_size: int, head_size: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2).float() / head_size)
    angles = torch.outer(torch.arange(block_size).float(), inv_freq)  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1[i], x2[i]) of the two head halves by position-dependent angles."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.rope = config.n_head, config.n_embd, config.rope
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        if self.rope:
            cos, sin = rope_cache(config.block_size, config.head_size, config.rope_base)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.rope:
            q = apply_rope(q, self.cos[:T], self.sin[:T]).to(v.dtype)
            k = apply_rope(k, self.cos[:T], self.sin[:T]).to(v.dtype)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MoE(config) if config.moe else MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """``logits, loss = model(idx, targets)``: logits (B, T, vocab) at every position; loss is
    the mean cross-entropy alone. After a forward with MoE on, ``model.aux_loss`` holds the
    weighted auxiliary losses to add to the training objective (zero without MoE)."""

    def __init__(
        self, config: GPTConfig, fgrams: Sequence[Fgram | Sequence[int]] | None = None
    ) -> None:
        super().__init__()
        if config.fgram and fgrams is None:
            raise ValueError("fgram: the config has fgram on, so GPT needs the mined fgrams")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = None if config.rope else nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying

        self.fgram_ids: list[list[int]] | None = None
        if config.fgram:
            ids = [list(g.ids if isinstance(g, Fgram) else g) for g in fgrams]
            self.fgram_ids = [g for g in ids if 2 <= len(g) <= config.fgram_max_n]
            self.fgram_match = FgramMatcher(self.fgram_ids, config.vocab_size, config.fgram_max_n)
            self.fgram_ctx = FgramContextualizer(
                config.n_embd, config.fgram_n_head, config.fgram_max_n, config.bias
            )

        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.fgram:
            self.fgram_ctx.reset_out()
        self.aux_loss = torch.zeros(())

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size={self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        if self.config.fgram:
            x = x + self.fgram_ctx(x, self.fgram_match(idx))
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)

        if self.config.moe:
            moes = [b.mlp for b in self.blocks]
            self.aux_loss = self.config.aux_loss_coef * sum(
                m.lb_loss for m in moes
            ) + self.config.z_loss_coef * sum(m.z_loss for m in moes)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    # --- what the trainer and the loggers read ---------------------------------------------

    def routing(self) -> torch.Tensor | None:
        """The last forward's routing, ``(n_layer, 2 + n_experts)``: per layer the unweighted
        load-balance loss, z-loss and expert loads, detached; None without MoE."""
        if not self.config.moe:
            return None
        return torch.stack([b.mlp.routing() for b in self.blocks])

    def moe_stats(self) -> MoEStats | None:
        """Aux losses (summed over layers) and per-layer expert load of the last forward;
        None without MoE. The trainer reports means over training steps instead."""
        routing = self.routing()
        return None if routing is None else MoEStats.from_routing(routing)

    def num_params(self) -> tuple[int, int]:
        """(total, active per token): with MoE, a token uses top_k of the n_experts experts."""
        total = sum(p.numel() for p in self.parameters())
        if not self.config.moe:
            return total, total
        expert_params = sum(
            p.numel()
            for b in self.blocks
            for p in (b.mlp.w_fc, b.mlp.w_proj, b.mlp.b_fc, b.mlp.b_proj)
            if p is not None
        )
        c = self.config
        return total, total - expert_params * (c.n_experts - c.top_k) // c.n_experts

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward and backward), PaLM-style as in nanoGPT:
        6 x active non-embedding-position parameters plus attention's 12 x L x C x T."""
        c = self.config
        _, active = self.num_params()
        if self.wpe is not None:
            active -= self.wpe.weight.numel()
        return 6 * active + 12 * c.n_layer * c.n_embd * c.block_size

    # --- optimizer and generation ---------------------------------------------------------

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on weight matrices only: never on norms, biases or embeddings (the
        MoE's per-expert biases are 2-D but still biases)."""
        no_decay_ids = {id(self.wte.weight)}
        if self.wpe is not None:
            no_decay_ids.add(id(self.wpe.weight))
        if self.config.fgram:
            no_decay_ids.add(id(self.fgram_ctx.slot_emb))
        decay, no_decay, seen = [], [], set()
        for name, p in self.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            is_bias = name.endswith(("bias", "b_fc", "b_proj"))
            matrix = p.dim() >= 2 and not is_bias and id(p) not in no_decay_ids
            (decay if matrix else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if top_k is not None and top_k < 0:
            raise ValueError("top_k: must be >= 0 (0 or None: no top-k filtering)")
        for _ in range(max_new_tokens):
            cond = idx[:, -self.config.block_size :]  # (B, <= block_size)
            logits, _ = self(cond)
            logits = logits[:, -1, :].float() / max(temperature, 1e-8)
            if top_k:  # None or 0: no top-k filtering
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx

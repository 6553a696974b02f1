"""NanoMoE: a from-scratch char-level GPT with RoPE, MoE and mined F-grams as switches."""

from nanomoe.config import GPTConfig, TrainConfig, variant_name
from nanomoe.model import GPT

__all__ = ["GPT", "GPTConfig", "TrainConfig", "variant_name"]

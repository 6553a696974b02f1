"""NanoMoE: a from-scratch char-level GPT with RoPE, MoE and mined F-grams as switches.

Import what you use from its module: ``from nanomoe.model import GPT, GPTConfig``. This file
imports nothing, so a light user (the data stages) never loads the model.
"""

"""NanoMoE: a from-scratch GPT with RoPE, MoE and mined F-grams as switches, trained on
characters or a byte-level BPE (the tokenizer is a factor too).

Import what you use from its module: ``from nanomoe.model import GPT, GPTConfig``. This file
imports nothing, so a light user (the data stages) never loads the model.
"""

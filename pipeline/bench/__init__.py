"""Benchmark the 8 variants at nanoGPT's CPU reference config; print a table and the machine.

    python -m pipeline.bench [--steps 40] [--full] [--json PATH]
    python -m pipeline.bench --ab [--steps 40]   # MoE dispatch: grouped kernel vs expert loop
    python -m pipeline.bench --system-metrics    # MLflow's system-metrics monitor: its cost
    python -m pipeline.bench.corpus --mb 100 400  # download and prepare: MB/s, peak RSS

Config: the defaults of ``GPTConfig``, ``TrainConfig`` and ``MiningConfig`` (nanoGPT's CPU
reference: 4 layers, 4 heads, 128 dims, block 64, batch 12, lr 1e-3, 100 warmup steps, cosine
to 1e-4 over 2000 iterations, dropout 0; MoE 4 experts top-1; F-gram max n 3, mined as the
pipeline mines them), never params.yaml, so the figures do not follow its edits.

One module per benchmark, each printing its own figures: ``variants`` (the default: every
cell of the ablation), ``dispatch`` (``--ab``) and ``system_metrics`` (``--system-metrics``);
``cli`` is the command, and ``measure`` holds what they and ``pipeline.bench.gpu_check`` share (the
matmul peak, the tokens to train on). This file imports nothing, so ``gpu_check`` loads only
``measure``.
"""

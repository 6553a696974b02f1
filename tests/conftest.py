"""Shared fixtures for the model-library tests: a tiny synthetic corpus, its tokenizer and
splits, mined F-grams, and factories for tiny configs and models of any variant.

Everything is built here from a fixed seed; nothing is read from disk or the network.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nanomoe.config import GPTConfig
from nanomoe.data import CharTokenizer
from nanomoe.fgram import mine_fgrams
from nanomoe.model import GPT
from nanomoe.switches import Levels, cells, config_fields, model_grid, variant_name

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core (pytest-xdist): each worker, and every
    # process it starts (they inherit the variable), computes on one thread, so the workers
    # do not fight over the cores. The models here are tiny: one thread costs them nothing.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


# Every cell of the registry's full grid: {switch: level} for all eight variants.
ALL_VARIANTS = cells(model_grid())  # the tokenizer changes the ids, not the model

TINY_WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "and",
    "dog",
    "ran",
    "café",
    "naïve",
    "—",
    "then",
    "that",
    "there",
]


@pytest.fixture
def torch_single_thread():
    """Run a test on one intra-op thread, restoring the setting afterwards. The models here
    are tiny, so one thread costs nothing, and it keeps timings stable when other processes
    share the CPU (two OpenMP threads spinning on a busy core can be 100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=ALL_VARIANTS, ids=[variant_name(v) for v in ALL_VARIANTS])
def variant(request) -> dict:
    """Parametrizes a test over every variant: the levels of the switches of one cell."""
    return request.param


@pytest.fixture(scope="session")
def tiny_corpus() -> str:
    """About 3,000 characters of word salad with some non-ASCII characters and newlines."""
    rng = np.random.default_rng(1234)
    lines = []
    for _ in range(80):
        lines.append(" ".join(rng.choice(TINY_WORDS, size=int(rng.integers(4, 9)))))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus) -> CharTokenizer:
    return CharTokenizer.from_text(tiny_corpus)


@pytest.fixture(scope="session")
def tiny_ids(tiny_corpus, tiny_tokenizer) -> np.ndarray:
    return np.array(tiny_tokenizer.encode(tiny_corpus), dtype=tiny_tokenizer.dtype)


@pytest.fixture(scope="session")
def tiny_splits(tiny_ids) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): the first 90% and the last 10% of the token ids."""
    n_train = int(len(tiny_ids) * 0.9)
    return tiny_ids[:n_train], tiny_ids[n_train:]


@pytest.fixture(scope="session")
def tiny_fgrams(tiny_splits, tiny_tokenizer):
    train, _ = tiny_splits
    return mine_fgrams(train, tiny_tokenizer.vocab_size, max_n=4, min_count=2, max_fgrams=64)


@pytest.fixture(scope="session")
def tiny_config(tiny_tokenizer):
    """Factory: ``tiny_config(levels, **overrides)`` -> a tiny GPTConfig; ``levels`` maps
    switches to their level (a switch left out is off)."""

    def make(levels: Levels | None = None, **overrides):
        kwargs = dict(
            vocab_size=tiny_tokenizer.vocab_size,
            block_size=16,
            n_layer=2,
            n_head=2,
            n_embd=32,
            n_experts=4,
            top_k=2,
            fgram_max_n=4,
            **config_fields(levels or {}),
        )
        kwargs.update(overrides)
        return GPTConfig(**kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_model(tiny_config, tiny_fgrams):
    """Factory: ``tiny_model(levels, seed=0, **overrides)`` -> a tiny GPT whose weights
    depend only on ``seed``."""

    def make(levels: Levels | None = None, seed: int = 0, **kw):
        config = tiny_config(levels, **kw)
        torch.manual_seed(seed)
        return GPT(config, fgrams=tiny_fgrams if config.fgram else None)

    return make


pytest_plugins = ["_postgres", "_slurm"]  # real servers: `postgres`, started here; `slurm`

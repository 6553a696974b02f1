"""A cell's corpus as its run's dataset inputs: the train split (context ``training``) and the
validation split (``validation``), so ``mlflow ui``'s Dataset column shows, and filters by,
what a cell trained and was judged on.

Each split is one MLflow dataset: its name is the corpus, the split and the tokenizer
(``input.txt train char``); its source the corpus's URL, or its shards' (``{"url": ...}`` or
``{"urls": [...]}``); its digest the first 32 hex digits of the corpus's sha256 (MLflow keeps
36 characters), the same for both splits, so a changed corpus changes it; its profile the
full sha256, the tokenizer and the split's tokens and bytes.
"""

from __future__ import annotations

import json

from mlflow.entities import Dataset, DatasetInput, InputTag

from pipeline.tracking.store import Run

DIGEST_CHARS = 32
CONTEXTS = {"train": "training", "val": "validation"}
SPLIT_NAMES = {"train": "train", "val": "validation"}


def log_corpus(run: Run, urls: list[str], sha256: str, tokenizer: str, meta: dict) -> None:
    """Log the corpus at ``urls`` (sha256 ``sha256``), as ``tokenizer`` encoded it (its
    prepared data's ``meta``), as ``run``'s train and validation inputs."""
    label = urls[0].rstrip("/").rsplit("/", 1)[-1] + (f"+{len(urls) - 1}" if len(urls) > 1 else "")
    source = {"url": urls[0]} if len(urls) == 1 else {"urls": urls}
    kind = "http" if all(u.startswith(("http://", "https://")) for u in urls) else "local"
    inputs = []
    for split, context in CONTEXTS.items():
        profile = {
            "sha256": sha256,
            "tokenizer": tokenizer,
            "vocab_size": meta["vocab_size"],
            "tokens": meta[f"n_{split}"],
            "bytes": meta["text"][split]["bytes"],
        }
        dataset = Dataset(
            name=f"{label} {SPLIT_NAMES[split]} {tokenizer}",
            digest=sha256[:DIGEST_CHARS],
            source_type=kind,
            source=json.dumps(source),
            profile=json.dumps(profile),
        )
        tags = [InputTag("mlflow.data.context", context), InputTag("tokenizer", tokenizer)]
        inputs.append(DatasetInput(dataset, tags))
    run.client.log_inputs(run.id, datasets=inputs)

"""What one ``python -m pipeline.tune`` works on, resolved once from its arguments and
params.yaml (``cli.resolve``), and how its storage may be shown: a database URL's password
never reaches a helper's command line, the terminal or MLflow.

Light on purpose: the command line imports it before the heavy imports, and the worker's
session (``session.py``) takes the ``Command`` it describes.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.tune.ladder import Ladder
from pipeline.tune.settings import TuneSettings

STORAGE_ENV = "NANOMOE_TUNE_STORAGE"  # --storage's default: a password stays out of `ps`


def is_url(storage: str | None) -> bool:
    return bool(storage) and "://" in storage


def helper_args(a: argparse.Namespace, name: str) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of a helper worker: this study, searching
    only. A database URL goes through the environment, where ps does not show its password."""
    args, env = ["--trials", str(a.trials), "--study-name", name], {}
    if is_url(a.storage):
        env[STORAGE_ENV] = a.storage
    elif a.storage is not None:
        args += ["--storage", a.storage]
    for flag, value in (("--seed", a.seed), ("--timeout", a.timeout)):
        if value is not None:
            args += [flag, str(value)]
    return args, env


def safe_url(url: str | None, text: str | None = None) -> str:
    """The storage as it may be printed: a database URL with its password as ``***``; or,
    given ``text`` (an error message), that text without the URL's password."""
    if not is_url(url):
        return (url or "experiments/tune/journal.log") if text is None else text
    found = re.match(r"[^:/]*://[^:/@]*:([^@]*)@", url)  # scheme://user:password@
    if not found or not found[1]:
        return url if text is None else text
    if text is None:
        return f"{url[: found.start(1)]}***{url[found.end(1) :]}"
    for secret in (found[1], unquote(found[1])):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Command:
    """What this command works on, resolved once from its arguments and params.yaml."""

    args: argparse.Namespace
    layout: Layout
    params: Params
    settings: TuneSettings
    ladder: Ladder
    name: str  # the study's
    seed: int  # every trial's training seed, and the sampler's

    @property
    def out(self) -> Path:
        """The report's folder: a study not named tune.study_name reports in its own."""
        tune_dir = self.layout.tune_dir
        return tune_dir if self.name == self.settings.study_name else tune_dir / self.name

    @property
    def journal(self) -> Path:
        return self.layout.tune_dir / "journal.log"

    @property
    def where(self) -> str:
        """The storage as it may be printed."""
        return safe_url(self.args.storage)

    @property
    def on_database(self) -> bool:
        return is_url(self.args.storage)

    def scrub(self, text: str) -> str:
        """``text`` (an error message) without the storage's password."""
        return safe_url(self.args.storage, text)

    def helper(self) -> tuple[list[str], dict[str, str]]:
        """A helper worker's command line and environment: ``helper_args``."""
        return helper_args(self.args, self.name)

"""``mlflow ui`` as a user sees it: a page rendered by headless Chromium (Debian's
``chromium-headless-shell``; no driver), its DOM dumped once the page's scripts have run."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SHELL = "chromium-headless-shell"
# the page's scripts get this much virtual time (the clock runs as fast as they allow)
BUDGET_MS = 20000
# ag-grid draws only the columns in view: wide enough for every metric column of a model
WINDOW = "9000,700"


def shell() -> str:
    """The browser's path; without one, the test fails under CI (``CI=true``), else skips."""
    path = shutil.which(SHELL)
    if path is None:
        why = f"no {SHELL} on PATH (apt-get install {SHELL})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why}; CI must run the browser check: .ci/run installs it")
        pytest.skip(why)
    return path


def render(url: str, screenshot: str | None = None) -> str:
    """The DOM of ``url`` after its scripts ran; with ``screenshot``, a PNG of it there too."""
    base = [shell(), "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW}"]
    base.append(f"--virtual-time-budget={BUDGET_MS}")
    if screenshot:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    done = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout

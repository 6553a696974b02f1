"""requirements.lock (`make lock`) against its inputs and against the installed venv.

The lock pins every package that requirements.txt and pyproject.toml need, with hashes; its
header records `inputs-sha256`, a digest of those two files' requirements (`inputs_digest`:
comments and blank lines do not count). Offline: no uv, no resolution, no network.

Run as a script it prints the digest: `make lock` writes it into the lock's header.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

# Only the standard library at import: `make lock` runs this file before the venv has pytest.

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# The venv's own tools, never in the lock: the project (installed editable), the venv's pip,
# and the uv that the Makefile installs with pip.

_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;,]+))?")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    """PEP 503: `PyYAML`, `pyyaml`, `zc.lockfile` and `zc-lockfile` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_txt() -> list[str]:
    """requirements.txt's requirement strings, without comments or blank lines."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [s for s in (re.sub(r"(^|\s)#.*", "", line).strip() for line in lines) if s]


def project_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def roots() -> list[str]:
    """What `make install` asks for without EXTRAS: requirements.txt and pyproject's
    dependencies."""
    requirements = [r for r in requirements_txt() if not r.startswith("-")]  # not pip options
    return requirements + project_table()["dependencies"]


def top_level() -> list[str]:
    """Every top-level requirement: the roots and pyproject's extras."""
    extras = project_table().get("optional-dependencies", {})
    return roots() + [r for e in extras.values() for r in e]


def inputs_digest() -> str:
    """sha256 of what `make lock` resolves: requirements.txt's requirements and pyproject's
    requires-python, dependencies and extras."""
    project = project_table()
    inputs = {
        "requirements.txt": requirements_txt(),
        "requires-python": project.get("requires-python"),
        "dependencies": project["dependencies"],
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def locked() -> dict[str, str]:
    """{canonical name: version} of every package requirements.lock pins."""
    pins = (_PIN.match(line) for line in LOCK.read_text().splitlines())
    return {canonical(m[1]): m[2] for m in pins if m}


def test_lock_pins_every_top_level_requirement():
    """Red: bump numpy in requirements.txt (or add a package there or to pyproject's
    dependencies) without `make lock`."""
    pins = locked()
    stale = []
    for requirement in top_level():
        name, version = _REQ.match(requirement).groups()
        if canonical(name) not in pins:
            stale.append(f"{requirement}: not in requirements.lock")
        elif version and pins[canonical(name)] != version:
            stale.append(f"{requirement}: requirements.lock has {pins[canonical(name)]}")
    assert not stale, "requirements.lock is stale, run `make lock`:\n" + "\n".join(stale)


def test_lock_header_digest_matches_inputs():
    """Red: any change to requirements.txt's requirements or pyproject.toml's dependencies
    without `make lock`, including ones the pins do not show (remove a package from
    requirements.txt, loosen a pin, add an extra); comments and blank lines do not count."""
    header = re.search(r"^# inputs-sha256: ([0-9a-f]{64})$", LOCK.read_text(), re.M)
    assert header, "requirements.lock has no `# inputs-sha256:` line: run `make lock`"
    assert header[1] == inputs_digest(), "requirements.lock is stale: run `make lock`"


def test_lock_is_portable():
    """Red: a lock resolved with the CPU torch's find-links folder (torch==2.13.0+cpu), one
    that records a path or an index (uv's --emit-find-links, --emit-index-url), a package
    without hashes (no --generate-hashes), or no header saying it is `make lock`'s."""
    text = LOCK.read_text()
    assert not re.search(r"(^|\s)(/|file:|--index-url|--find-links|-f\s)", text, re.M), (
        "requirements.lock records a local path or an index"
    )
    local = {name: v for name, v in locked().items() if "+" in v}
    assert not local, f"local versions in requirements.lock (a wheel folder's?): {local}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", text)
    unhashed = [e.split()[0] for e in entries if _PIN.match(e) and "--hash=sha256:" not in e]
    assert not unhashed, f"pinned without hashes: {unhashed}"
    header = re.match(r"(#.*\n)*", text)[0]  # the comment lines above the first pin
    assert "`make lock`" in header, "no header saying how requirements.lock was made"


def test_venv_matches_lock():
    """The running venv (`make install`) against the lock. Red: `make lock` after a bump
    without `make install` (numpy 2.4.6 installed, 2.4.7 locked), a locked package moved by
    hand (`pip install tqdm==4.67.1`), or a locked one removed (`pip uninstall -y tqdm`). A
    package the lock does not name (a developer's own ipython) is left alone.

    A locked package that nothing installed requires may be absent: NVIDIA's CUDA packages
    beside the CPU torch (torch 2.13.0+cpu counts as 2.13.0), and the extras' packages
    without EXTRAS."""
    import importlib.metadata as metadata
    import sysconfig

    import pytest
    from packaging.requirements import Requirement

    if not (Path(sys.prefix) / ".installed").exists():
        pytest.skip(f"{sys.prefix} is not a venv made by `make install`")
    pins = locked()
    # the venv's own site-packages only: once setuptools is imported (some test does), its
    # vendored copies (packaging, zipp, ...) are on sys.path too, at their own versions
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonical(d.metadata["Name"]): d for d in metadata.distributions(path=site)}
    wrong = [
        f"{name} {d.version} installed, requirements.lock has {pins.get(name, 'none')}"
        for name, d in sorted(installed.items())
        if name in pins and pins[name] != d.version.split("+")[0]
    ]
    # What the top-level requirements need here, through installed packages' metadata.
    todo = [Requirement(r) for r in roots()]
    seen, missing = set(), []
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        if name not in installed:
            missing.append(f"{req} (locked: {pins.get(name)})")
            continue
        wanted = [""] + sorted(req.extras)
        for r in map(Requirement, installed[name].requires or []):
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(r)
    assert not wrong + missing, "the venv does not match requirements.lock (`make install`):\n" + (
        "\n".join(wrong + [f"missing: {m}" for m in missing])
    )


if __name__ == "__main__":
    print(inputs_digest())

"""The rule for the tests that need a real PostgreSQL: under CI they run, never skip."""

from __future__ import annotations

import pytest
from _postgres import no_server, server_bin


def outcome() -> tuple[str, str]:
    """What ``no_server`` does to the test that called it: (outcome, reason)."""
    try:
        no_server()
    except BaseException as err:  # pytest's Failed and Skipped are BaseExceptions
        return type(err).__name__, str(err)
    return "passed", ""


def test_without_a_server_binary_ci_fails_and_elsewhere_the_tests_skip(monkeypatch):
    monkeypatch.setenv("CI", "true")
    ci = outcome()
    monkeypatch.delenv("CI")
    elsewhere = outcome()
    assert ci[0] == "Failed" and "CI must run the PostgreSQL tests" in ci[1]
    assert elsewhere[0] == "Skipped" and "no PostgreSQL server binary" in elsewhere[1]


def test_the_server_binary_is_found_where_debian_puts_it(monkeypatch, tmp_path):
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # not on PATH: the Debian layout still finds it
    found = server_bin()
    if found is None:
        pytest.skip("no PostgreSQL under /usr/lib/postgresql on this machine")
    assert (found / "initdb").exists() and found.match("/usr/lib/postgresql/*/bin")
    monkeypatch.setenv("PG_BIN", str(tmp_path))  # a $PG_BIN without the binaries is passed over
    assert server_bin() == found

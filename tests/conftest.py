"""Shared fixtures: a real temporary git repository, and a gate for real-bubblewrap tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import OPEN_TOOLS, make_repo


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with one commit (README.md), in its own temporary directory."""
    return make_repo(tmp_path / "repo")


@pytest.fixture
def requires_bwrap() -> None:
    """Skip when bubblewrap is missing or broken on this machine; fail instead when CI is set,
    so CI never silently skips the sandbox tests."""
    from ralph.tools.probe import bwrap_problem

    problem = bwrap_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the bubblewrap tests, but {problem}")
    pytest.skip(f"bubblewrap unavailable: {problem}")


@pytest.fixture(autouse=True)
def _close_open_tools() -> Iterator[None]:
    """Close the tools a test registered with `closed_after_test`, so no HOME is left in /tmp."""
    yield
    while OPEN_TOOLS:
        OPEN_TOOLS.pop().close()


@pytest.fixture(autouse=True)
def _events_as_declared(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every event an in-process test makes a run emit must be declared, with its fields, in
    ralph/events.py (README's table is generated from it): an event or a field nobody
    declared fails the test that emits it, also where the emit's caller swallows errors."""
    from ralph.events import Bus, Event, check_event

    real = Bus.emit

    undeclared: list[str] = []

    def emit(self: Bus, name: str, level: str = "info", **data: Any) -> Event:
        try:
            check_event(name, data)
        except ValueError as exc:
            undeclared.append(str(exc))
            raise
        return real(self, name, level, **data)

    monkeypatch.setattr(Bus, "emit", emit)
    yield undeclared
    assert not undeclared, undeclared

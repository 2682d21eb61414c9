"""Shared fixtures: a real temporary git repository, and a gate for real-bubblewrap tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
    from ralph.tools.sandbox import bwrap_problem

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

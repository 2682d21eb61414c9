"""Every command that reads a repository's runs says the same one line outside one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HANG, clean_env, run_here


@pytest.mark.parametrize(
    "args",
    [["runs"], ["show", "latest"], ["resume", "latest"], ["watch", "latest"], ["steer", "x", "go"]],
)
def test_a_command_outside_a_repository_names_it_and_the_fix(
    tmp_path: Path, args: list[str]
) -> None:
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    done = run_here([*args, "--repo", str(plain)], plain, command="ralph", env=clean_env())
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"ralph: error: {plain} is not inside a git repository; pass --repo DIR"
    )


def test_python_m_ralph_names_itself_ralph(tmp_path: Path) -> None:
    """`python -m ralph` (a real process) says `ralph: error:`, as the installed command does."""
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "ralph", "runs", "--repo", str(plain)],
        cwd=plain,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"ralph: error: {plain} is not inside a git repository; pass --repo DIR"
    )

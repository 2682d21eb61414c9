"""Every command that reads a repository's runs says the same one line outside one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import clean_env, run_here


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

"""`ralph init` writes a ralph.yaml that documents every setting and loads as written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ralph.config import FILE_KEYS, file_layer
from ralph.init import TEMPLATE
from tests.helpers import make_repo, run_cli


def test_template_documents_every_setting() -> None:
    documented = set(re.findall(r"^# ([a-z_]+):", TEMPLATE, re.M))
    assert documented >= FILE_KEYS, FILE_KEYS - documented


def test_uncommented_template_loads(tmp_path: Path) -> None:
    lines = []
    for line in TEMPLATE.splitlines():
        if re.match(r"^# [a-z_]+:", line) or re.match(r"^#   ", line):
            lines.append(line[2:])
    text = "\n".join(lines)
    data = yaml.safe_load(text)
    assert "model" in data and "pricing" in data
    (tmp_path / "ralph.yaml").write_text(text)
    layer = file_layer(tmp_path)
    assert layer["network"] == "on" and layer["stall_limit"] == 5


def test_init_command(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    proc = run_cli(["init", "--prompts"], cwd=repo, command="ralph")
    assert proc.returncode == 0, proc.stderr
    assert (repo / "ralph.yaml").read_text() == TEMPLATE
    assert (repo / "prompts" / "security.md").is_file()
    again = run_cli(["init"], cwd=repo, command="ralph")
    assert again.returncode == 2 and "--force" in again.stderr


def test_example_ralph_yaml_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "ralph.yaml"
    (tmp_path / "ralph.yaml").write_text(example.read_text())
    layer = file_layer(tmp_path)
    assert layer["worktree"] is True and layer["timeout"] == 8 * 3600
    assert layer["verify"] == ["python -m pytest -q", "ruff check ."]

"""`ralph init` writes a ralph.yaml that documents every setting and loads as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from ralph.cli import build_config
from ralph.config import RunConfig, file_layer
from ralph.init import TEMPLATE, init_repo
from ralph.layers import FILE_KEYS
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
    # and it keeps to what a repository file may set
    assert build_config("go <promise>T</promise>", {}, tmp_path).stall_limit == 4


def _setting_blocks() -> list[tuple[str, str]]:
    """Each commented setting of the template with its indented continuation lines,
    uncommented as a user would: (setting, yaml text)."""
    lines = TEMPLATE.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        match = re.match(r"^# ([a-z_]+):", line)
        if match is None:
            continue
        block = [line[2:]]
        for more in lines[i + 1 :]:
            if not re.match(r"^#\s{2,}", more):
                break
            block.append(more[2:])
        blocks.append((match.group(1), "\n".join(block) + "\n"))
    return blocks


@pytest.mark.parametrize(("setting", "text"), _setting_blocks())
def test_each_template_setting_uncommented_alone_loads_with_its_default(
    setting: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("RALPH_"):
            monkeypatch.delenv(name)
    (tmp_path / "ralph.yaml").write_text(text)
    # The whole path a run takes: parsing, the repository-file checks, merging, validation.
    cfg = build_config("go <promise>T</promise>", {}, tmp_path)
    if setting == "completion_promise":  # an example: by default the prompt names it
        assert cfg.completion_promise == "DONE"
    else:
        assert getattr(cfg, setting) == getattr(RunConfig(), setting), text


def test_template_states_the_repository_file_restrictions() -> None:
    from ralph.settings import NEVER, OPERATOR, SETTINGS

    flat = " ".join(line.lstrip("# ") for line in TEMPLATE.splitlines())
    assert "stricter wins" in flat and "sandbox (none < auto < bwrap)" in flat
    for name, s in SETTINGS.items():
        if s.repo in (OPERATOR, NEVER):
            assert f" {name}" in flat, name


def test_copied_prompts_run_from_the_repository(tmp_path: Path) -> None:
    # The built-ins ask for max_iterations: 30, which a repository file may not: the copies
    # say so in a comment, and run as they are.
    for name in ("security", "incident-response"):
        init_repo(tmp_path, with_prompts=True, force=True)
        copy = (tmp_path / "prompts" / f"{name}.md").read_text()
        assert "# max_iterations: " in copy and "pass --max-iterations" in copy
        cfg = build_config(str(tmp_path / "prompts" / f"{name}.md"), {}, tmp_path)
        assert cfg.max_iterations == RunConfig().max_iterations and cfg.artifacts

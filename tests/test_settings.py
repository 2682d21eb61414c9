"""Settings are declared once (ralph/settings.py); the CLI, RALPH_* variables, ralph.yaml
template and README are derived from the declarations."""

from __future__ import annotations

import os

import pytest

from ralph.docs import README, TEMPLATE, _yaml, readme_with_tables
from ralph.layers import env_layer, option_name
from ralph.settings import OPTIONS, SETTINGS, RunConfig


def test_readme_tables_are_generated_from_the_declarations() -> None:
    readme = README.read_text(encoding="utf-8")
    assert readme == readme_with_tables(readme), "run `python -m ralph.docs`"


def test_every_run_config_field_but_the_prompt_and_repo_is_a_setting() -> None:
    from dataclasses import fields

    others = {f.name for f in fields(RunConfig)} - set(SETTINGS)
    assert others == {"prompt", "prompt_name", "prompt_source", "repo"}


def test_the_run_command_has_one_option_per_declared_option() -> None:
    from typer.main import get_command

    from ralph.cli import app

    command = get_command(app).commands["run"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    assert set(params) == {s.name for s in OPTIONS} | {"prompt", "repo", "resume"}
    for s in OPTIONS:
        assert params[s.name].opts[0] == option_name(s.name), s.name
        assert params[s.name].help == s.help


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if s.default not in (None, "")])
def test_every_setting_is_read_from_its_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = SETTINGS[name]
    for var in [v for v in os.environ if v.startswith("RALPH_")]:
        monkeypatch.delenv(var)
    value = _yaml(setting.default).strip('"')
    monkeypatch.setenv(setting.env, value)
    assert env_layer() == {name: setting.default}


def test_the_template_has_a_line_for_each_file_setting() -> None:
    for name, s in SETTINGS.items():
        written = f"\n# {name}:" in TEMPLATE
        assert written == (s.repo.name != "never"), name

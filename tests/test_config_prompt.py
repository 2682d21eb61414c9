"""Prompt resolution, front matter and the precedence of configuration sources."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ralph.cli import build_config
from ralph.config import RunConfig, env_layer, parse_duration, validate
from ralph.errors import UsageError
from ralph.prompt import builtin_names, load_prompt


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("45m") == 2700
    assert parse_duration("8h") == 28800
    assert parse_duration("1h30m") == 5400
    assert parse_duration(12) == 12
    for bad in ("", "abc", "1x", "m", "-5"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_prompt_file_with_front_matter(tmp_path: Path) -> None:
    p = tmp_path / "job.md"
    p.write_text("---\ncompletion_promise: DONE\nmax_iterations: 4\n---\nDo the job.\n")
    spec = load_prompt(str(p))
    assert spec.name == "job"
    assert spec.text == "Do the job.\n"
    assert spec.settings == {"completion_promise": "DONE", "max_iterations": 4}


def test_invalid_front_matter_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.md"
    p.write_text("---\ndescription: ok\nmax_iterations: [1,\n---\nbody\n")
    with pytest.raises(UsageError) as err:
        load_prompt(str(p))
    assert str(p) in err.value.message and "line" in err.value.message


def test_unclosed_front_matter(tmp_path: Path) -> None:
    p = tmp_path / "bad.md"
    p.write_text("---\ndescription: ok\nbody\n")
    with pytest.raises(UsageError, match="closing"):
        load_prompt(str(p))


def test_unknown_front_matter_key(tmp_path: Path) -> None:
    p = tmp_path / "typo.md"
    p.write_text("---\nmax_iteratons: 3\n---\nbody\n")
    with pytest.raises(UsageError, match="max_iteratons"):
        load_prompt(str(p))


@pytest.mark.parametrize("arg", ["missing/prompt.md", "nothere.md", "./x.txt"])
def test_missing_path_is_an_error_not_inline(arg: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_prompt(arg, cwd=tmp_path)


def test_misspelt_builtin_suggests() -> None:
    with pytest.raises(UsageError, match="did you mean 'security'"):
        load_prompt("secuirty")


def test_inline_and_stdin() -> None:
    spec = load_prompt("SECURITY HARDENING: audit it. Output <promise>S</promise>")
    assert spec.source == "inline" and spec.name == "security-hardening-audit"
    assert spec.promises == ["S"]
    spec = load_prompt("-", stdin=io.StringIO("fix things <promise>F</promise>\n"))
    assert spec.source == "-" and spec.promises == ["F"]
    with pytest.raises(UsageError, match="empty"):
        load_prompt("-", stdin=io.StringIO("  \n"))


def test_builtins_resolve() -> None:
    names = builtin_names()
    assert {"security", "observability", "incident-response", "reliability"} <= set(names)
    spec = load_prompt("security")
    assert spec.source == "builtin:security"
    assert spec.settings["completion_promise"] == "SECURITY_AUDIT_COMPLETE"


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ralph.yaml").write_text(
        "max_iterations: 7\nmax_turns: 9\nstall_limit: 2\nmodel: m-file\n"
    )
    p = tmp_path / "p.md"
    p.write_text(
        "---\nmax_iterations: 8\nmax_turns: 11\nmodel: m-front\n---\ngo <promise>T</promise>\n"
    )
    monkeypatch.setenv("RALPH_MAX_ITERATIONS", "12")
    monkeypatch.setenv("RALPH_MODEL", "m-env")
    cfg = build_config(str(p), {"model": "m-flag"}, tmp_path)
    assert cfg.model == "m-flag"  # flag beats env
    assert cfg.max_iterations == 12  # env beats front matter
    assert cfg.max_turns == 11  # front matter beats ralph.yaml
    assert cfg.stall_limit == 2  # ralph.yaml beats default
    assert cfg.max_failures == RunConfig().max_failures
    assert cfg.completion_promise == "T"


def test_several_promises_need_a_choice(tmp_path: Path) -> None:
    p = tmp_path / "p.md"
    p.write_text("say <promise>A</promise> or <promise>B</promise>\n")
    with pytest.raises(UsageError, match="--completion-promise"):
        build_config(str(p), {}, tmp_path)
    assert build_config(str(p), {"completion_promise": "B"}, tmp_path).completion_promise == "B"


def test_bad_ralph_yaml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ralph.yaml").write_text("max_turns: 3\nmodel: [unclosed\n")
    with pytest.raises(UsageError) as err:
        build_config("do it <promise>X</promise>", {}, tmp_path)
    assert "ralph.yaml line" in err.value.message


def test_bad_env_value_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RALPH_MAX_TURNS", "lots")
    with pytest.raises(UsageError, match=r"^environment variable RALPH_MAX_TURNS: 'lots' is not"):
        env_layer()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_iterations": -1}, "cannot be negative"),
        ({"max_iterations": 0}, "needs a budget"),
        ({"max_turns": 0}, "--max-turns"),
        ({"in_place": True, "worktree": True}, "exclude each other"),
        ({"env": ["HOME"]}, "RALPH_"),
    ],
)
def test_validation(changes: dict[str, object], message: str) -> None:
    cfg = RunConfig(prompt="x", **changes)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=message):
        validate(cfg)


def test_zero_iterations_accepted_with_budget() -> None:
    validate(RunConfig(prompt="x", max_iterations=0, max_cost=1.0))
    validate(RunConfig(prompt="x", max_iterations=0, timeout=60))

"""Prompt resolution, front matter and the precedence of configuration sources."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from ralph.cli import build_config
from ralph.config import DEFAULT_MODEL, RunConfig, parse_duration, validate
from ralph.errors import UsageError
from ralph.layers import env_layer
from ralph.run.prompt import builtin_names, load_prompt
from tests.helpers import clean_env, make_repo, run_cli


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
    with pytest.raises(UsageError, match=r"standard input \(-\) is empty; pipe the task in"):
        load_prompt("-", stdin=io.StringIO("  \n"))


def test_builtins_resolve() -> None:
    names = builtin_names()
    assert {"security", "observability", "incident-response", "reliability"} <= set(names)
    spec = load_prompt("security")
    assert spec.source == "builtin:security"
    assert spec.settings["completion_promise"] == "SECURITY_AUDIT_COMPLETE"


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "ralph.yaml").write_text(
        "max_iterations: 7\nmax_turns: 9\nstall_limit: 2\nmodel: m-file\n"
    )
    p = tmp_path / "p.md"  # the operator's, outside the repository (see test_trust.py)
    p.write_text(
        "---\nmax_iterations: 8\nmax_turns: 11\nmodel: m-front\n---\ngo <promise>T</promise>\n"
    )
    monkeypatch.setenv("RALPH_MAX_ITERATIONS", "12")
    monkeypatch.setenv("RALPH_MODEL", "m-env")
    cfg = build_config(str(p), {"model": "m-flag"}, repo)
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


# --- repository files may only tighten security ----------------------------------------------

GO = "go <promise>T</promise>"


@pytest.mark.parametrize("where", ["ralph.yaml", "front matter"])
def test_repository_files_cannot_turn_the_sandbox_off(where: str, tmp_path: Path) -> None:
    if where == "ralph.yaml":
        (tmp_path / "ralph.yaml").write_text("sandbox: none\n")
        prompt = GO
    else:
        (tmp_path / "p.md").write_text(f"---\nsandbox: none\n---\n{GO}\n")
        prompt = str(tmp_path / "p.md")
    with pytest.raises(UsageError) as err:
        build_config(prompt, {}, tmp_path)
    assert "sandbox: none" in err.value.message
    assert "--sandbox none" in err.value.message and "RALPH_SANDBOX=none" in err.value.message
    assert "\n" not in err.value.message


def test_a_repository_file_may_make_pull_requests_drafts_but_never_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ralph.yaml").write_text("pr_draft: true\n")
    assert build_config(GO, {}, tmp_path).pr_draft is True
    (tmp_path / "ralph.yaml").write_text("pr_draft: false\n")
    with pytest.raises(UsageError) as err:
        build_config(GO, {}, tmp_path)
    assert "pr_draft: false is refused from a repository file" in err.value.message
    assert err.value.message.endswith("pass --no-pr-draft or set RALPH_PR_DRAFT=false")
    assert build_config(GO, {"pr_draft": False}, tmp_path).pr_draft is False
    monkeypatch.setenv("RALPH_PR_DRAFT", "0")
    assert build_config(GO, {}, tmp_path).pr_draft is False


def test_flag_and_environment_may_turn_the_sandbox_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ralph.yaml").write_text("sandbox: bwrap\nnetwork: 'off'\n")
    assert build_config(GO, {"sandbox": "none", "network": "on"}, tmp_path).sandbox == "none"
    monkeypatch.setenv("RALPH_SANDBOX", "none")
    monkeypatch.setenv("RALPH_NETWORK", "on")
    cfg = build_config(GO, {}, tmp_path)
    assert (cfg.sandbox, cfg.network) == ("none", "on")


def test_sandbox_none_in_a_file_is_moot_when_the_user_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the error says "pass --sandbox none": doing so must work, file line or not
    (tmp_path / "ralph.yaml").write_text("sandbox: none\n")
    assert build_config(GO, {"sandbox": "none"}, tmp_path).sandbox == "none"
    monkeypatch.setenv("RALPH_SANDBOX", "bwrap")
    assert build_config(GO, {}, tmp_path).sandbox == "bwrap"


@pytest.mark.parametrize("mode", ["auto", "bwrap"])
def test_repository_files_may_choose_a_sandbox(mode: str, tmp_path: Path) -> None:
    (tmp_path / "ralph.yaml").write_text(f"sandbox: {mode}\nnetwork: 'off'\n")
    cfg = build_config(GO, {}, tmp_path)
    assert (cfg.sandbox, cfg.network) == (mode, "off")


def test_front_matter_cannot_undo_ralph_yaml_security(tmp_path: Path) -> None:
    (tmp_path / "ralph.yaml").write_text("sandbox: bwrap\nnetwork: 'off'\n")
    p = tmp_path / "p.md"
    p.write_text(f"---\nsandbox: auto\nnetwork: 'on'\n---\n{GO}\n")
    cfg = build_config(str(p), {}, tmp_path)
    assert (cfg.sandbox, cfg.network) == ("bwrap", "off")


def test_repository_files_cannot_give_a_price(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not for a built-in model (it would weaken --max-cost), nor for another (a tiny price
    # for an agent-chosen model id would defeat it too).
    for model in (DEFAULT_MODEL, "my-model"):
        (tmp_path / "ralph.yaml").write_text(f"pricing:\n  {model}: {{input: 3, output: 15}}\n")
        with pytest.raises(UsageError, match=r"pricing is refused .*set RALPH_PRICING$"):
            build_config(GO, {}, tmp_path)
    # the user's environment may (e.g. a negotiated price)
    (tmp_path / "ralph.yaml").unlink()
    monkeypatch.setenv("RALPH_PRICING", f"{{{DEFAULT_MODEL}: {{input: 1, output: 5}}}}")
    cfg = build_config(GO, {}, tmp_path)
    assert cfg.pricing == {DEFAULT_MODEL: {"input": 1.0, "output": 5.0}}


def test_only_ralph_variables_are_passed_and_not_by_repository_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="only RALPH_"):
        build_config(GO, {"env": ["ANTHROPIC_API_KEY"]}, tmp_path)
    (tmp_path / "ralph.yaml").write_text("env: [RALPH_A]\n")
    with pytest.raises(UsageError, match=r"env is refused .*pass --env or set RALPH_ENV"):
        build_config(GO, {}, tmp_path)


def test_repository_files_cannot_name_a_log_file(tmp_path: Path) -> None:
    # ralph (outside the sandbox) would append to any path the agent chose, e.g. ~/.bashrc
    (tmp_path / "ralph.yaml").write_text("log_file: /tmp/anywhere.jsonl\n")
    with pytest.raises(UsageError, match="not a file setting; remove it, and pass --log-file"):
        build_config(GO, {}, tmp_path)


def test_cli_refuses_sandbox_none_from_ralph_yaml(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"ralph.yaml": "sandbox: none\n"})
    proc = run_cli([GO, "--dry-run"], cwd=repo)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and "--sandbox none" in proc.stderr


# --- flags turn off what lower layers turned on -----------------------------------------------


@pytest.mark.parametrize(
    ("file", "flags", "expected"),
    [
        ("worktree: true", {"in_place": True}, {"in_place": True, "worktree": False}),
        ("in_place: true", {"worktree": True}, {"in_place": False, "worktree": True}),
        ("in_place: true", {"branch": "mine"}, {"in_place": False, "branch": "mine"}),
        ("branch: theirs", {"in_place": True}, {"in_place": True, "branch": None}),
        ("worktree: true", {"worktree": False}, {"worktree": False}),
        ("no_commit: true", {"no_commit": False}, {"no_commit": False}),
        ("allow_dirty: true", {"allow_dirty": False}, {"allow_dirty": False}),
        ("quiet: true\nverbose: true", {"quiet": False, "verbose": False}, {"quiet": False}),
        ("pr: true\npr_draft: true", {"pr": False, "pr_draft": False}, {"pr": False}),
        ("otel: true\nshow_text: true", {"otel": False}, {"otel": False, "show_text": True}),
    ],
)
def test_flags_override_lower_layers(
    file: str, flags: dict[str, object], expected: dict[str, object], tmp_path: Path
) -> None:
    (tmp_path / "ralph.yaml").write_text(file + "\n")
    cfg = build_config(GO, flags, tmp_path)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_environment_mode_beats_ralph_yaml_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ralph.yaml").write_text("worktree: true\n")
    monkeypatch.setenv("RALPH_IN_PLACE", "1")
    cfg = build_config(GO, {}, tmp_path)
    assert cfg.in_place and not cfg.worktree


def test_two_modes_on_one_layer_still_conflict(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="exclude each other"):
        build_config(GO, {"in_place": True, "worktree": True}, tmp_path)


def test_cli_no_flags_undo_ralph_yaml(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"ralph.yaml": "worktree: true\nquiet: true\n"})
    env = clean_env(ANTHROPIC_API_KEY="sk-ant-not-a-real-key")
    args = [GO, "--dry-run", "--sandbox", "none"]
    proc = run_cli([*args, "--in-place", "--no-quiet"], cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)["config"]
    assert (config["in_place"], config["worktree"], config["quiet"]) == (True, False, False)
    proc = run_cli(args, cwd=repo, env=env)  # nothing given: ralph.yaml's values stand
    config = json.loads(proc.stdout)["config"]
    assert (config["worktree"], config["quiet"]) == (True, True)


# --- prompts/<built-in>.md works in any repository --------------------------------------------


@pytest.mark.parametrize("arg", ["prompts/security.md", "./prompts/security.md"])
def test_missing_prompts_builtin_path_falls_back_to_the_builtin(arg: str, tmp_path: Path) -> None:
    spec = load_prompt(arg, cwd=tmp_path)
    assert spec.source == "builtin:security" and spec.name == "security"
    assert spec.settings["completion_promise"] == "SECURITY_AUDIT_COMPLETE"
    assert spec.note is not None and "ralph init --prompts" in spec.note and arg in spec.note


def test_existing_prompts_file_beats_the_builtin(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "security.md").write_text("my own <promise>MINE</promise>\n")
    spec = load_prompt("prompts/security.md", cwd=tmp_path)
    assert spec.promises == ["MINE"] and spec.note is None


def test_prompts_path_of_no_builtin_is_still_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_prompt("prompts/securty.md", cwd=tmp_path)
    with pytest.raises(UsageError, match=r"does not exist.*the built-in is `ralph-loop security`"):
        load_prompt("other/security.md", cwd=tmp_path)
    with pytest.raises(UsageError, match="the built-in is `ralph-loop reliability`"):
        load_prompt("reliability.md", cwd=tmp_path)


def test_readme_usage_works_in_any_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    proc = run_cli(
        ["prompts/security.md", "--max-iterations", "30", "--dry-run", "--sandbox", "none"],
        cwd=repo,
        env=clean_env(ANTHROPIC_API_KEY="sk-ant-not-a-real-key"),
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)["config"]
    assert config["prompt_source"] == "builtin:security" and config["max_iterations"] == 30
    assert proc.stderr.count("\n") == 1
    assert "using the built-in prompt 'security'" in proc.stderr
    assert "ralph init --prompts" in proc.stderr


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["", "  "])
def test_empty_model_is_bad_input(model: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--model is empty"):
        build_config(GO, {"model": model}, tmp_path)


def test_cli_empty_model_exits_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    proc = run_cli([GO, "--model", "", "--dry-run"], cwd=repo)
    assert proc.returncode == 2
    assert "--model is empty" in proc.stderr and "credentials" not in proc.stderr


def test_sentence_ending_in_a_file_name_is_inline() -> None:
    spec = load_prompt("Output <promise>DONE</promise> after writing sdlc/notes.md")
    assert spec.source == "inline" and spec.promises == ["DONE"]
    spec = load_prompt("Harden it: see sdlc/notes and docs/x. Output <promise>D</promise>")
    assert spec.source == "inline"


# --- a bad value names the layer it came from -------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ("ralph.yaml", "ralph.yaml: max_cost must be more than 0"),
        ("front matter", "p.md front matter: max_cost must be more than 0"),
        ("environment", "environment variable RALPH_MAX_COST must be more than 0"),
    ],
)
def test_out_of_range_value_names_its_file_or_variable(
    layer: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = tmp_path / "p.md"
    prompt.write_text(GO + "\n")
    if layer == "ralph.yaml":
        (tmp_path / "ralph.yaml").write_text("max_cost: 0\n")
    elif layer == "front matter":
        prompt.write_text(f"---\nmax_cost: 0\n---\n{GO}\n")
    else:
        monkeypatch.setenv("RALPH_MAX_COST", "0")
    with pytest.raises(UsageError) as err:
        build_config(str(prompt), {}, tmp_path)
    # Not "--max-cost must be ...": the user gave no such option.
    assert err.value.message.endswith(expected) and "--max-cost" not in err.value.message


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--timeout", "soon"], "ralph-loop: error: --timeout: 'soon' is not a duration"),
        (["--stall-limit", "-1"], "ralph-loop: error: --stall-limit cannot be negative"),
        (
            ["--network", "maybe"],
            "ralph-loop: error: --network: 'maybe' is not one of: on, off, host",
        ),
    ],
)
def test_cli_bad_option_value_names_the_option(args: list[str], line: str, tmp_path: Path) -> None:
    proc = run_cli([GO, "--dry-run", *args], cwd=make_repo(tmp_path / "repo"), env=clean_env())
    assert proc.returncode == 2 and proc.stderr.startswith(line), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("env", "flag", "expected"),
    [("false", True, True), ("true", False, False), ("0", None, False), ("yes", None, True)],
)
def test_flag_beats_environment_either_way(
    env: str, flag: bool | None, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ralph.yaml").write_text(f"quiet: {str(not expected).lower()}\n")
    monkeypatch.setenv("RALPH_QUIET", env)
    flags = {} if flag is None else {"quiet": flag}
    assert build_config(GO, flags, tmp_path).quiet is expected


def test_front_matter_list_replaces_the_ralph_yaml_list(tmp_path: Path) -> None:
    # The operator's prompt file (outside the repository) replaces ralph.yaml's list; a
    # prompt file in the repository, which the agent could have written, only adds to it.
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "ralph.yaml").write_text("verify: [a]\n")
    for prompt, expected in ((tmp_path / "p.md", ["b"]), (repo / "p.md", ["a", "b"])):
        prompt.write_text(f"---\nverify: [b]\n---\n{GO}\n")
        assert build_config(str(prompt), {}, repo).verify == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('python -c "print(1, 2)"', ['python -c "print(1, 2)"']),
        ("pytest -q\nruff check .\n", ["pytest -q", "ruff check ."]),
        ('["pytest -q", "echo a, b"]', ["pytest -q", "echo a, b"]),
    ],
)
def test_verify_from_the_environment_keeps_commas(
    value: str, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RALPH_VERIFY", value)
    monkeypatch.setenv("RALPH_PR_LABELS", "security, bot")
    assert env_layer()["verify"] == expected
    assert env_layer()["pr_labels"] == ["security", "bot"]


def test_verify_string_in_a_file_is_one_command(tmp_path: Path) -> None:
    (tmp_path / "ralph.yaml").write_text("verify: python -c 'import a, b'\n")
    assert build_config(GO, {}, tmp_path).verify == ["python -c 'import a, b'"]


def test_dry_run_from_the_environment_not_from_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    env = clean_env(ANTHROPIC_API_KEY="sk-ant-not-a-real-key", RALPH_DRY_RUN="1")
    proc = run_cli([GO, "--sandbox", "none"], cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"]["dry_run"] is True
    assert not (repo / ".ralph").exists()
    (tmp_path / "ralph.yaml").write_text("dry_run: true\n")
    with pytest.raises(UsageError, match="not a file setting; remove it, and pass --dry-run"):
        build_config(GO, {}, tmp_path)


def test_sentence_ending_in_a_missing_file_name_says_how_to_mean_text(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"pass it on stdin with -$"):
        load_prompt("Fix the bug in notes.md", cwd=tmp_path)
    with pytest.raises(UsageError, match=r"built-in names$"):
        load_prompt("notes.md", cwd=tmp_path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("42", "artifacts: entry 1 needs a `path`"),
        ("{path: a.md, min: lots}", "artifacts: an entry's min must be a whole number"),
        ("{path: ../a.md}", "artifacts: entry 1: path '../a.md' must be relative"),
    ],
)
def test_bad_artifact_is_refused_before_anything_is_created(
    entry: str, message: str, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "p.md"
    prompt.write_text(f"---\nartifacts: [{entry}]\n---\n{GO}\n")
    proc = run_cli([str(prompt), "--sandbox", "none"], cwd=repo, env=clean_env())
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert f"p.md front matter: {message}" in proc.stderr
    assert not (repo / ".ralph").exists()
    assert (
        "ralph/"
        not in subprocess.run(
            ["git", "branch"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
    )


def test_artifacts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RALPH_ARTIFACTS", "[{path: sdlc/audit.md, checklist: true}]")
    assert env_layer()["artifacts"] == [{"path": "sdlc/audit.md", "checklist": True}]


@pytest.mark.parametrize(("option", "value"), [("--completion-promise", " "), ("--remote", "")])
def test_blank_token_or_remote_is_refused(option: str, value: str, tmp_path: Path) -> None:
    # A blank promise can never be matched: the run would burn every iteration.
    proc = run_cli([GO, option, value, "--dry-run"], cwd=make_repo(tmp_path / "r"), env=clean_env())
    assert proc.returncode == 2 and f"error: {option} is empty" in proc.stderr, proc.stderr
    (tmp_path / "ralph.yaml").write_text(f"{option[2:].replace('-', '_')}: '{value}'\n")
    with pytest.raises(UsageError, match=r"ralph\.yaml: \w+ is empty"):
        build_config(GO, {}, tmp_path)

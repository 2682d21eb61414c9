"""Guards end to end: budgets (cost, tokens, time), stalls, repetition and the circuit breaker
stop the real CLI with their exit codes, with the scripted model and over HTTP (FakeAPI). The
progress guards, whose CLI adds nothing, run the same runs in process (execute())."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.run.loop import RunResult
from ralph.run.runner import execute
from tests.fakeapi import FakeAPI, Message, text, tool_use
from tests.helpers import (
    clean_env,
    git,
    only_run,
    repo_and_prompt,
    run_cli,
    run_commits,
    run_here,
    write_script,
)

KEY = "sk-ant-api03-guards-test-key-0000000000"
MODEL = "claude-sonnet-5-5"  # $2 per million input tokens in the built-in table
TOKEN = "DONE"
PROMPT = f"Harden this repository. When all is done, output <promise>{TOKEN}</promise>.\n"
HALF_MILLION = {"input_tokens": 500_000, "output_tokens": 0,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}  # fmt: skip


def setup(tmp_path: Path, files: dict[str, str] | None = None) -> tuple[Path, Path]:
    return repo_and_prompt(tmp_path, PROMPT, {"README.md": "# app\n", **(files or {})})


def ralph(
    repo: Path, prompt: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        [str(prompt), "--repo", str(repo), "--sandbox", "none", *extra],
        cwd=repo,
        env=env,
    )


def scripted(
    repo: Path, prompt: Path, iterations: list[Any], *extra: str, model: str = MODEL
) -> subprocess.CompletedProcess[str]:
    script = write_script(prompt.parent / "session.yaml", iterations, model=model)
    return ralph(repo, prompt, "--model", f"script:{script}", *extra)


def scripted_run(
    repo: Path, prompt: Path, iterations: list[Any], model: str = MODEL, **settings: Any
) -> RunResult:
    """`scripted()` in process: the run the CLI would start, with these settings."""
    script = write_script(prompt.parent / "session.yaml", iterations, model=model)
    cfg = RunConfig(prompt=prompt.read_text(), prompt_name="harden", completion_promise=TOKEN,
                    repo=repo, model=f"script:{script}", sandbox="none", quiet=True,
                    **settings)  # fmt: skip
    return execute(cfg)


def report(repo: Path, run: dict[str, Any]) -> str:
    return (repo / ".ralph" / "runs" / str(run["id"]) / "report.md").read_text()


def branch_of(repo: Path) -> str:
    branches = git(repo, "branch", "--list", "ralph/*", "--format=%(refname:short)").split()
    assert len(branches) == 1, branches
    return branches[0]


def create(path: str) -> dict[str, Any]:
    return {"str_replace_based_edit_tool": {"command": "create", "path": path, "file_text": "x\n"}}


def api_create(path: str) -> dict[str, Any]:
    return tool_use(
        "str_replace_based_edit_tool", {"command": "create", "path": path, "file_text": "x\n"}
    )


# --- budgets: cost and tokens, scripted and over HTTP -------------------------------------------

BUDGETS = {
    "max-cost": (["--max-cost", "1.5"], "cost budget used: $2.0000 of $1.50", "$1.50"),
    "max-tokens": (["--max-tokens", "800000"], "token budget used: 1,000,000 of 800,000", "800,000"),
}  # fmt: skip


@pytest.mark.parametrize("backend", ["script", "http"])
@pytest.mark.parametrize("guard", list(BUDGETS))
def test_a_budget_ends_the_iteration_commits_its_work_and_exits_4(
    tmp_path: Path, guard: str, backend: str
) -> None:
    # Each model call costs $1 (500k input tokens at $2/M): the budget runs out after the
    # second call of iteration 1, before that call's tool runs.
    flags, reason, limit = BUDGETS[guard]
    repo, prompt = setup(tmp_path)
    if backend == "script":
        turns = [
            {"text": "First.", "tools": [create("first.md")], "usage": HALF_MILLION},
            {"text": "Second.", "tools": [create("second.md")], "usage": HALF_MILLION},
            {"text": "Never reached.", "usage": HALF_MILLION},
        ]
        proc = scripted(repo, prompt, [turns], "--max-iterations", "3", *flags)
    else:
        with FakeAPI(api_key=KEY) as api:
            api.add(
                Message([text("First."), api_create("first.md")], usage=HALF_MILLION),
                Message([text("Second."), api_create("second.md")], usage=HALF_MILLION),
            )
            env = clean_env(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=KEY)
            # In process: the script runs above are the CLI's; here what counts is the SDK's
            # usage reaching the budget, without paying its import once per case.
            args = [str(prompt), "--repo", str(repo), "--sandbox", "none", "--max-iterations"]
            proc = run_here([*args, "3", *flags], cwd=repo, env=env)
            assert len(api.requests) == 2
    assert proc.returncode == 4, proc.stderr
    assert reason in proc.stderr
    run = only_run(repo)
    assert run["status"] == "budget" and reason in run["reason"]
    assert run["tokens"] == 1_000_000 and run["cost_usd"] == pytest.approx(2.0)
    assert [it["outcome"] for it in run["iterations_detail"]] == ["stopped"]
    branch = branch_of(repo)
    (commit,) = run_commits(repo, branch)
    assert commit["iteration"] == "1"
    assert git(repo, "show", "--name-only", "--format=", commit["sha"]) == "first.md"
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / "second.md").exists()  # the tool call after the budget never ran
    assert limit in report(repo, run)  # spend shown against the budget


def test_timeout_ends_the_run_with_exit_4(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    turns = [
        {"text": "First.", "tools": [create("first.md")]},
        # Past the budget whenever the first turn ended within it: 4 s leaves a loaded machine
        # room for that turn (its budget counts from the run's start).
        {"text": "Thinking slowly.", "tools": [create("second.md")], "sleep": 4.5},
    ]
    proc = scripted(repo, prompt, [turns], "--timeout", "4s", "--max-iterations", "3")
    assert proc.returncode == 4, proc.stderr
    run = only_run(repo)
    assert run["status"] == "budget" and "time budget used" in run["reason"]
    (commit,) = run_commits(repo, branch_of(repo))
    assert git(repo, "show", "--name-only", "--format=", commit["sha"]) == "first.md"


def test_a_cost_budget_needs_a_price_and_the_operator_can_give_one(tmp_path: Path) -> None:
    unknown = "claude-unpriced-9"
    repo, prompt = setup(tmp_path)
    turns = [
        {"text": "First.", "tools": [create("first.md")], "usage": HALF_MILLION},
        {"text": "Second.", "usage": HALF_MILLION},
    ]
    proc = scripted(repo, prompt, [turns], "--max-cost", "3", model=unknown)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert unknown in line and "RALPH_PRICING" in line
    assert not (repo / ".ralph").exists()
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["main"]

    # A price in ralph.yaml, which the agent could have written, is refused.
    (repo / "ralph.yaml").write_text(f"pricing:\n  {unknown}: {{input: 0.01, output: 0.01}}\n")
    git(repo, "add", "ralph.yaml")
    git(repo, "commit", "-qm", "price")
    proc = scripted(repo, prompt, [turns], "--max-cost", "3", model=unknown)
    assert proc.returncode == 2 and "pricing is refused" in proc.stderr, proc.stderr
    git(repo, "rm", "-q", "ralph.yaml")
    git(repo, "commit", "-qm", "no price")

    # With the operator's price ($4/M input), the same run is priced and stopped by it.
    script = write_script(prompt.parent / "session.yaml", [turns], model=unknown)
    price = clean_env(RALPH_PRICING=f"{{{unknown}: {{input: 4, output: 20}}}}")
    proc = ralph(repo, prompt, "--model", f"script:{script}", "--max-cost", "3", env=price)
    assert proc.returncode == 4, proc.stderr
    run = only_run(repo)
    assert run["model"] == unknown and run["cost_usd"] == pytest.approx(4.0)


def test_without_a_price_the_cost_is_unknown_not_guessed(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    turns = [{"text": f"Done. <promise>{TOKEN}</promise>", "usage": HALF_MILLION}]
    proc = scripted(repo, prompt, [turns], "--max-tokens", "900000", model="claude-unpriced-9")
    assert proc.returncode == 0, proc.stderr
    run = only_run(repo)
    assert run["cost_usd"] is None and run["tokens"] == 500_000


# --- progress guards --------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "code", "ran"), [(2, 5, 2), (0, 3, 4)])
def test_stall_limit(tmp_path: Path, limit: int, code: int, ran: int) -> None:
    repo, prompt = setup(tmp_path)
    iterations = [[{"text": "Reading.", "tools": [{"bash": {"command": "cat README.md"}}]},
                   f"Looked at part {i}; nothing to change."] for i in range(1, 5)]  # fmt: skip
    result = scripted_run(repo, prompt, iterations, stall_limit=limit, max_iterations=4)
    assert result.exit_code == code, result.reason
    run = only_run(repo)
    assert len(run["iterations_detail"]) == ran
    if code == 5:
        assert run["status"] == "stalled"
        assert "2 iterations in a row made no progress" in run["reason"]
        assert "changed no file" in run["reason"] and "--stall-limit" in run["reason"]
    else:
        assert run["status"] == "max_iterations"


@pytest.mark.parametrize("kind", ["refusal", "tool errors"])
def test_max_failures_trips_the_circuit_breaker(tmp_path: Path, kind: str) -> None:
    repo, prompt = setup(tmp_path)
    if kind == "refusal":
        iteration: list[Any] = [{"text": "I will not do that.", "stop_reason": "refusal"}]
        why = "the model refused"
    else:  # a storm of failing tool calls
        views = [
            {"str_replace_based_edit_tool": {"command": "view", "path": f"missing-{k}.py"}}
            for k in range(5)
        ]
        iteration = [{"text": "Looking.", "tools": views}, "Could not find anything."]
        why = "all 5 tool calls failed"
    result = scripted_run(repo, prompt, [iteration], max_failures=2, max_iterations=6)
    assert result.exit_code == 5, result.reason
    run = only_run(repo)
    assert run["status"] == "failed" and len(run["iterations_detail"]) == 2
    assert "2 failed iterations in a row" in run["reason"] and why in run["reason"]


@pytest.mark.parametrize("same", [True, False])
def test_the_same_final_message_three_times_counts_as_stalled(tmp_path: Path, same: bool) -> None:
    repo, prompt = setup(tmp_path)
    iterations = [
        [
            {"text": "Working.", "tools": [{"bash": {"command": f"echo {i} >> log.txt"}}]},
            "Made a small fix." if same else f"Made small fix number {i}.",
        ]
        for i in range(1, 4)
    ]
    result = scripted_run(repo, prompt, iterations, stall_limit=1, max_iterations=3)
    run = only_run(repo)
    assert len(run["iterations_detail"]) == 3
    assert len(run_commits(repo, branch_of(repo))) == 3  # every iteration changed a file
    if same:
        assert result.exit_code == 5, result.reason
        assert "repeated the same final message" in run["reason"]
    else:
        assert result.exit_code == 3, result.reason


# --- unlimited iterations ---------------------------------------------------------------------


def test_max_iterations_0_runs_until_the_cost_budget(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    quarter = {**HALF_MILLION, "input_tokens": 250_000}  # $0.50 per call, $1 per iteration
    iteration = [
        {"text": "Step.", "tools": [{"bash": {"command": "echo step >> log.txt"}}], "usage": quarter},
        {"text": "Did a step.", "usage": quarter},
    ]  # fmt: skip
    proc = scripted(
        repo, prompt, [iteration], "--max-iterations", "0", "--max-cost", "2.5", "--stall-limit", "0"
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    run = only_run(repo)
    assert len(run["iterations_detail"]) == 3 and run["cost_usd"] == pytest.approx(2.5)
    assert len(run_commits(repo, branch_of(repo))) == 2  # iteration 3 stopped before its tool
    assert "∞" in proc.stderr  # iterations shown as unlimited


def test_max_iterations_0_without_a_budget_is_a_usage_error(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    proc = scripted(repo, prompt, [["Hi."]], "--max-iterations", "0")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--max-cost" in line and "--timeout" in line
    assert not (repo / ".ralph").exists()

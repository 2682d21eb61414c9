"""Codex as the agent: the real `codex` binary (npm @openai/codex, installed by .ci/run) in the
bubblewrap sandbox, against the local Responses API server (tests/fakeresponses.py) through a
model provider in its config.toml, driven by the real `ralph-loop` CLI."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ralph.agents.codex import reset_time
from tests.fakeresponses import (
    FakeResponses,
    Recorded,
    Reply,
    Response,
    Stall,
    custom_call,
    function_call,
    message,
    usage_limit,
    write_codex_home,
)
from tests.helpers import (
    BIN,
    HANG,
    STOP_WITHIN,
    clean_env,
    git,
    make_repo,
    only_run,
    run_cli,
    run_commits,
)

CODEX = shutil.which("codex")
if CODEX is None and os.environ.get("CI"):
    raise RuntimeError("codex is not installed: .ci/run installs @openai/codex")
needs_codex = pytest.mark.skipif(CODEX is None, reason="codex is not installed")

KEY = "sk-proj-codex-agent-test-0000000000000000"
SECRET = "ghp_thisisnotarealtokenbutlooksliketwentysix"
PROMPT = "Harden this repository. When all is done, output <promise>DONE</promise>.\n"
MODEL = "gpt-5.5"  # a model Codex has metadata for (else it warns on every run)


def env_for(api: FakeResponses, tmp_path: Path, **extra: str) -> dict[str, str]:
    home = write_codex_home(tmp_path / "codex-home", api, MODEL)
    env = {k: v for k, v in clean_env().items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(CODEX_HOME=str(home), OPENAI_API_KEY=KEY, GITHUB_TOKEN=SECRET, **extra)
    return env


def setup(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "app.py": "DEBUG = True\n"})
    prompt = tmp_path / "harden.md"
    prompt.write_text(PROMPT)
    return repo, prompt


def ralph(repo: Path, prompt: Path, env: dict[str, str], *extra: str) -> Any:
    args = [str(prompt), "--repo", str(repo), "--agent", "codex", "--log-format", "plain"]
    return run_cli([*args, *extra], cwd=repo, env=env)  # bounded by HANG


def patch(path: str, old: str, new: str) -> str:
    return f"*** Begin Patch\n*** Update File: {path}\n@@\n-{old}\n+{new}\n*** End Patch\n"


def run(cmd: str) -> dict[str, Any]:
    return function_call("exec_command", {"cmd": cmd})


@needs_codex
def test_codex_iterations_read_edit_create_and_complete_on_the_final_message(
    tmp_path: Path,
) -> None:
    repo, prompt = setup(tmp_path)
    with FakeResponses() as api:
        # Iteration 1: read, patch, create a file with a command; no promise.
        api.add(Response([message("Reading."), run("cat app.py")]))
        api.add(
            Response([custom_call("apply_patch", patch("app.py", "DEBUG = True", "DEBUG = False"))])
        )
        api.add(Response([run("env > agent-env.txt; echo checked > NOTES.md")]))
        api.add(Response([message("Turned DEBUG off and wrote notes.")]))
        # Iteration 2: the promise only in a command's output: not complete.
        api.add(Response([run("echo '<promise>DONE</promise>'")]))
        api.add(Response([message("Looked at the output; more to do.")]))
        # Iteration 3: the final message makes the promise.
        api.add(Response([run("echo '# Security' > SECURITY.md")]))
        api.add(Response([message("Added SECURITY.md. <promise>DONE</promise>")]))
        proc = ralph(repo, prompt, env_for(api, tmp_path), "--max-iterations", "5")
        requests = list(api.requests)
    assert proc.returncode == 0, proc.stderr
    assert (repo / "app.py").read_text() == "DEBUG = False\n"
    assert (repo / "SECURITY.md").is_file() and (repo / "NOTES.md").is_file()
    assert [c["iteration"] for c in run_commits(repo)] == ["1", "3"]
    # A fresh thread each iteration: three requests hold no earlier output.
    fresh = [
        r for r in requests if not any(i.get("type") == "function_call" for i in r.json["input"])
    ]
    assert len(fresh) == 3
    agent_env = (repo / "agent-env.txt").read_text()
    assert KEY in agent_env and SECRET not in agent_env and "GITHUB_TOKEN" not in agent_env
    summary = only_run(repo)
    assert summary["status"] == "completed"
    assert [it["outcome"] for it in summary["iterations_detail"]] == ["ended"] * 3
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        rows = db.execute("SELECT tool, exit_code, output FROM tool_calls ORDER BY ts").fetchall()
    assert [tool for tool, _, _ in rows] == ["bash", "apply_patch", "bash", "bash", "bash"]
    assert rows[0][1] == 0 and "DEBUG = True" in rows[0][2]
    assert "[3] promise DONE accepted" in proc.stderr and "[2] promise" not in proc.stderr
    assert summary["usage"]["input_tokens"] > 0
    assert summary["cost_usd"] is None  # Codex reports no dollars, and gpt-5.5 has no price


@needs_codex
def test_a_budget_that_runs_out_mid_iteration_kills_codex_and_keeps_its_work(
    tmp_path: Path,
) -> None:
    repo, prompt = setup(tmp_path)
    with FakeResponses() as api:
        api.add(Response([run("echo partial > partial.txt")]))
        # Only the time budget can end this iteration. It counts from the run's start, so it
        # leaves room for Codex to start and run the command on a loaded machine (8 s did not
        # always); Codex reports tokens only at a turn's end, so a token budget cannot.
        api.add(Stall())
        proc = ralph(repo, prompt, env_for(api, tmp_path), "--timeout", "15s")
    assert proc.returncode == 4, proc.stderr
    assert "time budget used" in proc.stdout + proc.stderr
    assert len(run_commits(repo)) == 1 and (repo / "partial.txt").is_file()
    assert [it["outcome"] for it in only_run(repo)["iterations_detail"]] == ["stopped"]


@needs_codex
def test_a_codex_usage_limit_waits_until_it_resets(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    replies = iter([Response([message("Done after the wait. <promise>DONE</promise>")])])

    def limited_then_done(request: Recorded) -> Reply:
        return usage_limit(time.time() + 2) if len(api.requests) == 1 else next(replies)

    with FakeResponses(responder=limited_then_done) as api:
        proc = ralph(repo, prompt, env_for(api, tmp_path), "--max-failures", "1")
    assert proc.returncode == 0, proc.stderr
    assert "codex usage limit" in proc.stderr
    assert only_run(repo)["iterations"] == 1


@needs_codex
def test_sigterm_stops_codex_and_exits_130_promptly(tmp_path: Path) -> None:
    # Promptly: within STOP_WITHIN (30 s), a bound a loaded machine keeps; the 5 s target on a
    # quiet machine is benchmarks/run.py's (figure 8).
    repo, prompt = setup(tmp_path)
    with FakeResponses() as api:
        api.add(Response([run("echo started > started.txt")]))
        api.add(Stall())
        args = [str(prompt), "--repo", str(repo), "--agent", "codex", "--log-format", "plain"]
        proc = subprocess.Popen(
            [str(BIN / "ralph-loop"), *args], cwd=repo, env=env_for(api, tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + HANG
        while len(api.requests) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=HANG)
        took = time.monotonic() - sent
    assert proc.returncode == 130 and took < STOP_WITHIN, f"took {took:.1f}s to stop"
    assert not _with_marker(str(tmp_path / "codex-home"))
    assert "interrupted" in git(repo, "log", "-1", "--format=%B")


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_an_unusable_codex_is_one_line_and_exit_2(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    old = tmp_path / "codex"
    old.write_text("#!/bin/sh\necho 'codex-cli 0.9.1'\n")
    old.chmod(0o755)
    env = {k: v for k, v in clean_env().items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(HOME=str(tmp_path), RALPH_CODEX_BIN=str(old), OPENAI_API_KEY=KEY)
    proc = run_cli([str(prompt), "--repo", str(repo), "--agent", "codex"], repo, env=env)
    assert proc.returncode == 2 and "is version 0.9.1, older than 0.50.0" in proc.stderr
    old.write_text("#!/bin/sh\necho 'codex-cli 0.171.0'\n")
    del env["OPENAI_API_KEY"]
    proc = run_cli([str(prompt), "--repo", str(repo), "--agent", "codex"], repo, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().endswith(
        "not logged in; set OPENAI_API_KEY or CODEX_API_KEY, or run `codex login`"
    )
    assert not (repo / ".ralph").exists()


def test_codex_reset_times_are_read_from_its_message() -> None:
    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    at = "You've hit your usage limit. ... or try again at 12:52 PM."
    assert reset_time(at, now) == datetime(2026, 12, 6, 12, 52, tzinfo=UTC).timestamp()
    early = "You’ve hit your usage limit. Try again at 9:15 AM."  # tomorrow's 9:15
    assert reset_time(early, now) == datetime(2026, 12, 7, 9, 15, tzinfo=UTC).timestamp()
    assert reset_time("try again in 2 hours", now) == now.timestamp() + 7200
    assert reset_time("no time given", now) == now.timestamp() + 3600

"""Claude Code as the agent: the real `claude` binary (npm @anthropic-ai/claude-code, installed
by .ci/run) in the bubblewrap sandbox, against the local Messages API server, driven by the
real `ralph-loop` CLI on real git repositories. Each claude process costs ~0.7 s: few of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakeapi import (
    FakeAPI,
    Message,
    Recorded,
    Reply,
    Stall,
    text,
    tool_use,
    usage_limit,
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
    write_script,
)

CLAUDE = shutil.which("claude")
if CLAUDE is None and os.environ.get("CI"):
    raise RuntimeError("claude is not installed: .ci/run installs @anthropic-ai/claude-code")
pytestmark = pytest.mark.skipif(CLAUDE is None, reason="claude (Claude Code) is not installed")

KEY = "sk-ant-api03-claude-agent-test-000000000000"
SECRET = "ghp_thisisnotarealtokenbutlooksliketwentysix"
PROMPT = "Harden this repository. When all is done, output <promise>DONE</promise>.\n"


def env_for(api: FakeAPI, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update(ANTHROPIC_BASE_URL=api.url, GITHUB_TOKEN=SECRET, **extra)
    if "CLAUDE_CODE_OAUTH_TOKEN" not in extra:
        env["ANTHROPIC_API_KEY"] = KEY
    return env


def setup(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "app.py": "DEBUG = True\n"})
    prompt = tmp_path / "harden.md"
    prompt.write_text(PROMPT)
    return repo, prompt


def ralph(repo: Path, prompt: Path, env: dict[str, str], *extra: str) -> Any:
    args = [str(prompt), "--repo", str(repo), "--agent", "claude-code", "--log-format", "plain"]
    return run_cli([*args, *extra], cwd=repo, env=env)  # bounded by HANG


def bash(command: str) -> dict[str, Any]:
    return tool_use("Bash", {"command": command, "description": "run"})


def test_claude_code_iterations_read_edit_create_and_complete_on_the_final_message(
    tmp_path: Path,
) -> None:
    repo, prompt = setup(tmp_path)
    app = str(repo / "app.py")
    with FakeAPI() as api:
        # Iteration 1: read, edit, run a command that creates a file; no promise.
        api.add(Message([text("Reading the app."), tool_use("Read", {"file_path": app})]))
        edit = {"file_path": app, "old_string": "DEBUG = True", "new_string": "DEBUG = False"}
        api.add(Message([tool_use("Edit", edit)]))
        api.add(Message([bash("env > agent-env.txt; echo checked > NOTES.md")]))
        api.add(Message("Turned DEBUG off and wrote notes."))
        # Iteration 2: the promise appears only in a tool result: not complete.
        api.add(Message([bash("echo '<promise>DONE</promise>'")]))
        api.add(Message("Looked at the output; more to do."))
        # Iteration 3: create a file, and the final message makes the promise.
        security = {"file_path": str(repo / "SECURITY.md"), "content": "# Security\n"}
        api.add(Message([tool_use("Write", security)]))
        api.add(Message("Added SECURITY.md. <promise>DONE</promise>"))
        proc = ralph(repo, prompt, env_for(api), "--max-iterations", "5")
        requests = list(api.requests)
    assert proc.returncode == 0, proc.stderr
    assert (repo / "app.py").read_text() == "DEBUG = False\n"
    commits = run_commits(repo)
    assert [c["iteration"] for c in commits] == ["1", "3"]  # iteration 2 changed nothing
    assert "Turned DEBUG off" in commits[0]["subject"]
    assert (repo / "SECURITY.md").is_file() and (repo / "NOTES.md").is_file()
    # Each iteration was a fresh session: its first request holds no earlier reply.
    firsts = [r for r in requests if all(m["role"] != "assistant" for m in r.json["messages"])]
    assert len(firsts) == 3
    # Its environment had its own credential and settings, never the runner's other secrets.
    agent_env = (repo / "agent-env.txt").read_text()
    assert f"ANTHROPIC_BASE_URL={api.url}" in agent_env and KEY in agent_env
    assert SECRET not in agent_env and "GITHUB_TOKEN" not in agent_env
    run = only_run(repo)
    assert run["status"] == "completed"
    assert [it["outcome"] for it in run["iterations_detail"]] == ["ended"] * 3
    assert (run["model_calls"], run["tool_calls"]) == (8, 5)
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        rows = db.execute("SELECT tool, output FROM tool_calls ORDER BY ts").fetchall()
    assert [tool for tool, _ in rows] == ["Read", "Edit", "bash", "bash", "Write"]
    assert "<promise>DONE</promise>" in rows[3][1]  # journaled as a tool output, nothing more
    # The plain live lines show the CLI's calls like ours.
    assert "bash: env > agent-env.txt" in proc.stderr
    assert "[3] promise DONE accepted" in proc.stderr
    assert "[2] promise" not in proc.stderr  # iteration 2's tool output is no promise
    assert run["usage"]["input_tokens"] > 0 and run["cost_usd"] > 0


def test_a_budget_that_runs_out_mid_iteration_kills_claude_and_keeps_its_work(
    tmp_path: Path,
) -> None:
    repo, prompt = setup(tmp_path)
    with FakeAPI() as api:
        api.add(Message([bash("echo partial > partial.txt")]))  # ~12.8k tokens
        # The second call starts (~12.9k more input tokens), then its stream hangs: only the
        # budget, counting the call in progress, can end it.
        # Without that, the run would hang until run_cli's bound (HANG) fails the test: no
        # wall-clock bound here, which a loaded machine could exceed.
        api.add(Message("never finished", stall_after=2))
        proc = ralph(repo, prompt, env_for(api), "--max-tokens", "20000", "--max-iterations", "3")
    assert proc.returncode == 4, proc.stderr
    assert "token budget used" in proc.stdout + proc.stderr
    commits = run_commits(repo)
    assert len(commits) == 1 and (repo / "partial.txt").is_file()
    run = only_run(repo)
    assert [it["outcome"] for it in run["iterations_detail"]] == ["stopped"]


def test_a_usage_limit_waits_until_it_resets_and_is_no_failure(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    replies = iter([Message("Done after the wait. <promise>DONE</promise>")])

    def limited_then_done(request: Recorded) -> Reply:
        # The reset is set when the request arrives: Claude Code reports a limit whose reset
        # has already passed as plain text, and its start-up time varies.
        return usage_limit(time.time() + 3) if len(api.requests) == 1 else next(replies)

    with FakeAPI(responder=limited_then_done) as api:
        env = env_for(api, CLAUDE_CODE_OAUTH_TOKEN="sk-ant-oat01-test-token")
        proc = ralph(repo, prompt, env, "--usage-limit-wait", "1m", "--max-failures", "1")
    assert proc.returncode == 0, proc.stderr
    assert "usage limit" in proc.stderr
    run = only_run(repo)
    assert run["iterations"] == 1 and run["status"] == "completed"


def test_a_usage_limit_runs_the_iteration_on_the_fallback_agent(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    # The built-in agent takes over, here with the scripted model.
    turns = [{"text": "On the fallback.", "tools": [{"bash": {"command": "echo x > FIXED.md"}}]},
             {"text": "Fixed it on the fallback. <promise>DONE</promise>"}]  # fmt: skip
    script = write_script(tmp_path / "session.yaml", [turns])
    with FakeAPI() as api:
        api.add(usage_limit(time.time() + 3600))
        env = env_for(api, CLAUDE_CODE_OAUTH_TOKEN="sk-ant-oat01-test-token")
        proc = ralph(
            repo, prompt, env, "--fallback-agent", "builtin", "--model", f"script:{script}",
            "--usage-limit-wait", "0",
        )  # fmt: skip
        requests = len(api.requests)
    assert proc.returncode == 0, proc.stderr
    assert "running on builtin" in proc.stderr
    assert (repo / "FIXED.md").is_file()
    assert requests == 1  # Claude Code's one call; the scripted model made the others
    run = only_run(repo)
    assert run["iterations"] == 1 and run["status"] == "completed"


def test_a_usage_limit_beyond_the_wait_bound_stops_the_run_resumably(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    with FakeAPI() as api:
        api.add(usage_limit(time.time() + 3 * 3600))
        env = env_for(api, CLAUDE_CODE_OAUTH_TOKEN="sk-ant-oat01-test-token")
        proc = ralph(repo, prompt, env, "--usage-limit-wait", "1h")
    assert proc.returncode == 1, proc.stderr
    assert "later than --usage-limit-wait" in proc.stdout + proc.stderr


def _claude_processes(marker: str) -> list[int]:
    """Processes whose environment holds `marker` (the fake server's URL)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry))
    return found


def test_sigterm_stops_claude_and_exits_130_promptly(tmp_path: Path) -> None:
    # Promptly: within STOP_WITHIN (30 s), a bound a loaded machine keeps; the 5 s target on a
    # quiet machine is benchmarks/run.py's (figure 8).
    repo, prompt = setup(tmp_path)
    with FakeAPI() as api:
        api.add(Message([bash("echo started > started.txt")]))
        api.add(Stall(None))
        cmd = [str(prompt), "--repo", str(repo), "--agent", "claude-code", "--log-format", "plain"]
        proc = subprocess.Popen(
            [str(BIN / "ralph-loop"), *cmd], cwd=repo, env=env_for(api),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + HANG
        while len(api.requests) < 2:  # claude is waiting on its second call
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.05)
        assert _claude_processes(api.url)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=HANG)
        took = time.monotonic() - sent
    assert proc.returncode == 130
    assert took < STOP_WITHIN, f"took {took:.1f}s to stop"
    assert _claude_processes(api.url) == []
    assert (repo / "started.txt").is_file()
    assert "interrupted" in git(repo, "log", "-1", "--format=%B")


def _fake_claude(tmp_path: Path, version: str) -> Path:
    script = tmp_path / "claude"
    script.write_text(f"#!/bin/sh\necho '{version} (Claude Code)'\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "RALPH_CLAUDE_BIN=/nonexistent/claude not found"),
        ("old", "is version 1.0.3, older than 2.0.0"),
        ("logged-out", "not logged in; set ANTHROPIC_API_KEY"),
    ],
)
def test_an_unusable_claude_is_one_line_and_exit_2_before_the_run(
    tmp_path: Path, case: str, expected: str
) -> None:
    repo, prompt = setup(tmp_path)
    env = {k: v for k, v in clean_env().items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env["HOME"] = str(tmp_path)  # no ~/.claude login
    if case == "missing":
        env["RALPH_CLAUDE_BIN"] = "/nonexistent/claude"
    else:
        version = "1.0.3" if case == "old" else "2.1.332"
        env["RALPH_CLAUDE_BIN"] = str(_fake_claude(tmp_path, version))
    if case != "logged-out":
        env["ANTHROPIC_API_KEY"] = KEY
    proc = run_cli([str(prompt), "--repo", str(repo), "--agent", "claude-code"], repo, env=env)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert git(repo, "branch", "--list", "ralph/*") == ""  # nothing was created
    assert not (repo / ".ralph").exists()


def test_a_repository_file_cannot_choose_the_agent_or_its_arguments(tmp_path: Path) -> None:
    repo, prompt = setup(tmp_path)
    for setting in ("agent: claude-code", "agent_args: [--dangerously-skip-permissions]"):
        (repo / "ralph.yaml").write_text(setting + "\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "config")
        proc = run_cli([str(prompt), "--repo", str(repo), "--dry-run"], repo, env=clean_env())
        assert proc.returncode == 2, proc.stderr
        assert "is not a file setting" in proc.stderr

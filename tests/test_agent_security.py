"""The issue's "done when": `ralph-loop security --agent claude-code|codex` completes on the
demo's vulnerable app against the local API servers, the gate (the audit's headings and
checklist, and the app's tests as a verify command) accepting it. The job is the demo's
recorded session, its tool calls spoken as each CLI's tools."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ralph.demo_run import SESSION, prepare_repo
from tests.fakeapi import FakeAPI, Message, text, tool_use
from tests.fakeresponses import FakeResponses, Response, function_call, message, write_codex_home
from tests.helpers import clean_env, only_run, run_cli, run_commits

VERIFY = "PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -q"
Call = tuple[str, str, dict[str, Any]]  # (text said before it, tool, input)


def session() -> list[list[tuple[str, list[tuple[str, dict[str, Any]]]]]]:
    """The demo session: per iteration, per turn, (text, [(tool, input), ...])."""
    data = yaml.safe_load(Path(SESSION).read_text())
    out = []
    for iteration in data["iterations"]:
        turns = []
        for turn in iteration["turns"]:
            if isinstance(turn, str):
                turns.append((turn, []))
                continue
            calls = [next(iter(call.items())) for call in turn.get("tools") or []]
            turns.append((str(turn.get("text") or ""), calls))
        out.append(turns)
    return out


def claude_replies(repo: Path) -> list[Message]:
    """The session as Claude Code's tools, a turn's calls in one reply (Claude Code runs
    them in order); an edit of a file is preceded by a Read of it (Claude Code edits only
    what its session has read)."""
    replies: list[Message] = []
    for turns in session():
        for said, calls in turns:
            blocks = [text(said)] if said else []
            uses = [use for tool, args in calls for use in _claude_calls(repo, tool, args)]
            replies.append(Message([*blocks, *uses] or "Done."))
    return replies


def _claude_calls(repo: Path, tool: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    if tool == "bash":
        return [tool_use("Bash", {"command": args["command"], "description": "run"})]
    path = str(repo / args["path"])
    read = tool_use("Read", {"file_path": path})
    if args["command"] == "view":
        return [read]
    if args["command"] == "create":
        write = tool_use("Write", {"file_path": path, "content": args["file_text"]})
        return [read, write] if (repo / args["path"]).exists() else [write]
    edit = {"file_path": path, "old_string": args["old_str"], "new_string": args["new_str"]}
    return [read, tool_use("Edit", edit)]


def codex_replies() -> list[Response]:
    """The session as Codex's tools: commands, and file writes and edits as commands."""
    replies: list[Response] = []
    for turns in session():
        for said, calls in turns:
            items = [message(said)] if said else []
            if not calls:
                replies.append(Response(items or [message("Done.")]))
            for tool, args in calls:
                cmd = args["command"] if tool == "bash" else _file_command(args)
                replies.append(Response([*items, function_call("exec_command", {"cmd": cmd})]))
                items = []
    return replies


def _file_command(args: dict[str, Any]) -> str:
    if args["command"] == "view":
        return f"cat {shlex.quote(args['path'])}"
    if args["command"] == "create":
        script = "import pathlib,sys; p=pathlib.Path(sys.argv[1]); p.parent.mkdir(parents=True, exist_ok=True); p.write_text(sys.argv[2])"
        return shlex.join(["python3", "-c", script, args["path"], args["file_text"]])
    script = "import pathlib,sys; p=pathlib.Path(sys.argv[1]); t=p.read_text(); assert t.count(sys.argv[2])==1; p.write_text(t.replace(sys.argv[2], sys.argv[3]))"
    return shlex.join(["python3", "-c", script, args["path"], args["old_str"], args["new_str"]])


def _check(repo: Path, proc: Any) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "promise SECURITY_AUDIT_COMPLETE accepted" in proc.stderr
    run = only_run(repo)
    assert run["status"] == "completed" and run["iterations"] == 4
    assert len(run_commits(repo)) == 4
    # The edits applied: the audit has every section, the app's tests passed (--verify).
    audit = (repo / "sdlc" / "security-audit.md").read_text()
    assert "## Findings" in audit and "## Remediation" in audit
    report = repo / ".ralph" / "runs" / run["id"] / "report.md"
    assert "SECURITY_AUDIT_COMPLETE" in report.read_text()


@pytest.mark.skipif(shutil.which("claude") is None, reason="claude is not installed")
def test_claude_code_completes_the_security_prompt_on_the_demo_app(tmp_path: Path) -> None:
    repo = prepare_repo(tmp_path / "app")
    with FakeAPI(default=Message("Nothing left.")) as api:
        api.add(*claude_replies(repo))
        env = {k: v for k, v in clean_env().items() if not k.startswith("ANTHROPIC_")}
        env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="sk-ant-api03-security-test")
        args = ["security", "--repo", str(repo), "--agent", "claude-code", "--max-iterations",
                "5", "--verify", VERIFY, "--log-format", "plain"]  # fmt: skip
        proc = run_cli(args, repo, env=env, timeout=300)
    _check(repo, proc)


@pytest.mark.skipif(shutil.which("codex") is None, reason="codex is not installed")
def test_codex_completes_the_security_prompt_on_the_demo_app(tmp_path: Path) -> None:
    repo = prepare_repo(tmp_path / "app")
    with FakeResponses(default=Response([message("Nothing left.")])) as api:
        api.add(*codex_replies())
        home = write_codex_home(tmp_path / "codex-home", api, "gpt-5.5")
        env = {k: v for k, v in clean_env().items() if not k.startswith(("OPENAI_", "CODEX_"))}
        env.update(CODEX_HOME=str(home), OPENAI_API_KEY="sk-proj-security-test")
        args = ["security", "--repo", str(repo), "--agent", "codex", "--max-iterations", "5",
                "--verify", VERIFY, "--log-format", "plain"]  # fmt: skip
        proc = run_cli(args, repo, env=env, timeout=300)
    _check(repo, proc)

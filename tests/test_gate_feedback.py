"""A rejected promise reaches the next iteration's prompt, and verify commands from every
source (ralph.yaml, front matter, repeated --verify) can reject one: the real CLI end to end."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.fakeapi import FakeAPI, Message, tool_use
from tests.helpers import clean_env, make_repo, run_cli, run_here, write_script

KEY = "sk-ant-api03-feedback-test-key-0000000000"
TOKEN = "DONE"
BODY = f"Harden this repository. When all is done, output <promise>{TOKEN}</promise>.\n"
FRONT = """---
artifacts:
  - path: sdlc/audit.md
  - path: sdlc/checklist.md
    checklist: true
---
"""
# 40 numbered lines on stdout, then a failure: the feedback carries only the tail.
NOISY_VERIFY = 'for n in $(seq 0 39); do echo "verify line $n"; done; exit 3'


def user_text(body: dict[str, Any]) -> str:
    """The text of a request's first (user) message."""
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def promises(repo: Path) -> list[tuple[int, bool, list[str]]]:
    """(iteration, accepted, reasons) of every promise the journal saw, in order."""
    db = sqlite3.connect(repo / ".ralph" / "ralph.db")
    try:
        rows = db.execute(
            "SELECT iteration, data FROM events WHERE name = 'promise_seen' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    return [(it, (d := json.loads(data))["accepted"], d.get("reasons", [])) for it, data in rows]


def test_the_rejection_is_in_the_next_iterations_prompt(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n"})
    prompt = tmp_path / "harden.md"
    prompt.write_text(FRONT + BODY)
    create = tool_use(
        "str_replace_based_edit_tool",
        {"command": "create", "path": "sdlc/checklist.md", "file_text": "- [ ] WAF n/a-todo\n"},
    )
    with FakeAPI(api_key=KEY) as api:
        api.add(
            Message([create]),
            Message(f"All done.\n<promise>{TOKEN}</promise>"),
            Message("Still working on it."),
        )
        env = {k: v for k, v in clean_env().items() if not k.startswith("ANTHROPIC_")}
        env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=KEY)
        # In process (the SDK imported once per test process); the runs below are the CLI's.
        proc = run_here(
            [str(prompt), "--repo", str(repo), "--sandbox", "none", "--max-iterations", "2",
             "--verify", NOISY_VERIFY],
            cwd=repo,
            env=env,
            )  # fmt: skip
        bodies = api.bodies
    assert proc.returncode == 3, proc.stderr  # max iterations: the promise was not accepted
    assert len(bodies) == 3
    first, second = user_text(bodies[0]), user_text(bodies[2])
    assert "[ralph] Iteration 1 of 2." in first and "rejected" not in first
    assert "[ralph] Iteration 2 of 2." in second
    assert "the completion gate rejected it" in second
    assert "- sdlc/audit.md: missing" in second
    assert "sdlc/checklist.md: 1 unchecked item(s) without 'N/A: reason': WAF n/a-todo" in second
    assert f"- verify `{NOISY_VERIFY}` exited 3:" in second
    # The tail of the command's output (its last 15 lines), not the lines before it.
    tail = "\n".join(f"verify line {n}" for n in range(25, 40))
    assert f"exited 3:\n{tail}\n" in second and "[exit code 3]" not in second
    assert "verify line 24\n" not in second
    [(iteration, accepted, reasons)] = promises(repo)
    assert (iteration, accepted, len(reasons)) == (1, False, 3)
    assert reasons[0] == "sdlc/audit.md: missing"


@pytest.mark.parametrize("source", ["ralph.yaml", "front matter", "repeated --verify"])
def test_verify_from_every_source_rejects_a_promise(tmp_path: Path, source: str) -> None:
    files = {"README.md": "# app\n"}
    front, flags = "", []
    if source == "ralph.yaml":
        files["ralph.yaml"] = "verify:\n  - echo from-ralph-yaml; exit 5\n"
        expected = ["verify `echo from-ralph-yaml; exit 5` exited 5:\nfrom-ralph-yaml"]
    elif source == "front matter":
        front = "---\nverify: ['echo from-front-matter; exit 6']\n---\n"
        expected = ["verify `echo from-front-matter; exit 6` exited 6:\nfrom-front-matter"]
    else:
        flags = ["--verify", "true", "--verify", "echo one; exit 7", "--verify", "echo two; exit 8"]
        expected = [
            "verify `echo one; exit 7` exited 7:\none",
            "verify `echo two; exit 8` exited 8:\ntwo",
        ]
    repo = make_repo(tmp_path / "repo", files)
    prompt = tmp_path / "harden.md"
    prompt.write_text(front + BODY)
    script = write_script(tmp_path / "session.yaml", [[f"Done.\n<promise>{TOKEN}</promise>"]])
    proc = run_cli(
        [str(prompt), "--repo", str(repo), "--model", f"script:{script}", "--sandbox", "none",
         "--max-iterations", "1", *flags],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert promises(repo) == [(1, False, expected)]


def test_passing_verify_commands_accept_the_promise(tmp_path: Path) -> None:
    """The control for the test above: the same run with commands that pass completes."""
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# app\n", "ralph.yaml": "verify: ['true']\n"}
    )
    prompt = tmp_path / "harden.md"
    prompt.write_text("---\nverify: ['echo fine']\n---\n" + BODY)
    script = write_script(tmp_path / "session.yaml", [[f"Done.\n<promise>{TOKEN}</promise>"]])
    proc = run_cli(
        [str(prompt), "--repo", str(repo), "--model", f"script:{script}", "--sandbox", "none",
         "--max-iterations", "1", "--verify", "true", "--verify", "exit 0"],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert promises(repo) == [(1, True, [])]

"""Secrets and confinement end to end: the real CLI over HTTP (FakeAPI), with secrets in the
runner's environment and an agent that goes looking for them or tries to leave its repository,
with and without bubblewrap."""

from __future__ import annotations

import json
import secrets
import shutil
import string
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ralph.redact import REDACTED
from tests.fakeapi import FakeAPI, Message, text, tool_use
from tests.helpers import clean_env, git, make_repo, run_cli

TOKEN = "DONE"
PROMPT = f"Audit this repository. When all is done, output <promise>{TOKEN}</promise>.\n"
SANDBOXES = ["none", "bwrap"]


def random_text(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def runner_secrets() -> dict[str, str]:
    """Fresh secret values: some with a known token shape, some that only their name marks."""
    return {
        "ANTHROPIC_API_KEY": "sk-ant-api03-" + random_text(40),
        "GITHUB_TOKEN": "ghp_" + random_text(36),
        "MY_SERVICE_TOKEN": "svc-" + secrets.token_hex(16),  # no known shape
        "AWS_SECRET_ACCESS_KEY": random_text(40, string.ascii_letters + string.digits + "/+"),
        "DB_PASSWORD": "pw-" + secrets.token_hex(12),
    }


def bash(command: str) -> dict[str, Any]:
    return tool_use("bash", {"command": command})


def edit(command: str, path: str, **fields: Any) -> dict[str, Any]:
    return tool_use("str_replace_based_edit_tool", {"command": command, "path": path, **fields})


def use_sandbox(request: pytest.FixtureRequest, sandbox: str) -> None:
    if sandbox == "bwrap":
        request.getfixturevalue("requires_bwrap")


def run(
    repo: Path, api: FakeAPI, values: dict[str, str], sandbox: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith("ANTHROPIC_")}
    env.update(values, ANTHROPIC_BASE_URL=api.url)
    prompt = repo.parent / "audit.md"
    prompt.write_text(PROMPT)
    return run_cli(
        [str(prompt), "--repo", str(repo), "--sandbox", sandbox, "--max-iterations", "2", *extra],
        cwd=repo,
        env=env,
    )


def tool_results(bodies: list[Any]) -> list[dict[str, Any]]:
    """Every tool_result block sent to the model, in order."""
    return [
        block
        for body in bodies
        for message in body["messages"]
        if message["role"] == "user"
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def unique_results(bodies: list[Any]) -> dict[str, dict[str, Any]]:
    return {block["tool_use_id"]: block for block in tool_results(bodies)}


# --- no secret leaks --------------------------------------------------------------------------

SNOOPING = [
    "env",
    r"cat /proc/self/environ | tr '\0' '\n'",
    'echo "gh=$GITHUB_TOKEN svc=$MY_SERVICE_TOKEN aws=$AWS_SECRET_ACCESS_KEY key=$ANTHROPIC_API_KEY"',
    # The runner's own environment, when the agent can see its process (unsandboxed).
    r"tr '\0' '\n' < /proc/$PPID/environ",
    'printf "%s\\n" "$GITHUB_TOKEN$MY_SERVICE_TOKEN" > found.txt; cat found.txt',
]  # fmt: skip


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_runner_secrets_reach_no_model_request_journal_log_or_report(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox: str
) -> None:
    use_sandbox(request, sandbox)
    values = runner_secrets()
    repo = make_repo(tmp_path / "repo")
    log_file = tmp_path / "logs" / "run.jsonl"
    with FakeAPI(api_key=values["ANTHROPIC_API_KEY"]) as api:
        api.add(
            Message([text("Checking the environment."), *(bash(c) for c in SNOOPING)]),
            Message(f"Found no secrets. <promise>{TOKEN}</promise>"),
        )
        proc = run(
            repo, api, values, sandbox,
            "--log-format", "json", "--log-file", str(log_file), "--verbose", "--show-text",
        )  # fmt: skip
        requests = list(api.requests)
    assert proc.returncode == 0, proc.stderr
    assert len(requests) == 2
    # The key was in use (the SDK sends it as a bearer token).
    assert requests[0].headers["authorization"] == "Bearer " + values["ANTHROPIC_API_KEY"]

    results = [str(b["content"]) for b in tool_results([r.json for r in requests])]
    assert len(results) == len(SNOOPING), results
    env_out, self_environ, echoed, parent, found = results
    for shown in (env_out, self_environ):
        assert "HOME=" in shown and "PATH=" in shown  # the commands really ran
        for name in values:
            assert name not in shown  # not even the names reach the agent
    assert echoed == "gh= svc= aws= key="
    if sandbox == "none":
        # The agent can read the runner's /proc entry: the values are redacted in the result.
        assert "GITHUB_TOKEN=[REDACTED]" in parent and "MY_SERVICE_TOKEN=[REDACTED]" in parent
    assert found in ("", "(no output)")

    places: dict[str, bytes] = {
        "stdout": proc.stdout.encode(),
        "stderr (JSON logs)": proc.stderr.encode(),
        "--log-file": log_file.read_bytes(),
        "git history": subprocess.run(
            ["git", "log", "-p", "--all"], cwd=repo, capture_output=True, check=True
        ).stdout,
    }
    for number, sent in enumerate(requests):
        places[f"request {number} body"] = sent.body
    for path in sorted((repo / ".ralph").rglob("*")):
        if path.is_file():  # the journal and its WAL/SHM files, the report, the lock
            places[str(path.relative_to(repo))] = path.read_bytes()
    assert ".ralph/ralph.db" in places and any(p.endswith("report.md") for p in places)
    for where, data in places.items():
        for name, value in values.items():
            assert value.encode() not in data, f"{name} leaked into {where}"
    # The logs and journal did record the tool outputs (so the checks above mean something).
    log_lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    outputs = [r["output"] for r in log_lines if r["event"] == "tool_finished"]
    assert len(outputs) == len(SNOOPING) and "HOME=" in outputs[0]
    assert all(line.startswith("{") for line in proc.stderr.splitlines())
    assert b"HOME=" in places[".ralph/ralph.db"]


# --- confinement --------------------------------------------------------------------------------


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_agent_cannot_write_outside_the_repository_or_into_git(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox: str
) -> None:
    use_sandbox(request, sandbox)
    outside = tmp_path / "outside.txt"
    outside.write_text("original\n")
    repo = make_repo(tmp_path / "repo")
    (repo / "out").symlink_to(tmp_path)  # a symlink pointing out of the repository
    git(repo, "add", "out")
    git(repo, "commit", "-qm", "a link out")
    head = git(repo, "rev-parse", "HEAD")
    git_config = (repo / ".git" / "config").read_text()

    edits = [
        edit("create", str(outside), file_text="pwned\n"),
        edit("create", "../outside.txt", file_text="pwned\n"),
        edit("str_replace", "../outside.txt", old_str="original", new_str="pwned"),
        edit("view", str(outside)),
        edit("create", "out/new.txt", file_text="pwned\n"),
        edit("create", ".git/hooks/pre-commit", file_text="#!/bin/sh\nexit 1\n"),
        edit("insert", ".git/config", insert_line=0, insert_text="[core]\n\thooksPath = /tmp\n"),
    ]
    shells = [  # bubblewrap's /tmp is private: writes there land in the sandbox, not here
        bash(f"echo pwned > {outside}"),
        bash("echo pwned > out/new2.txt"),
        bash(f"touch /usr/pwned-{tmp_path.name}"),
        bash("printf '#!/bin/sh\\nexit 1\\n' > .git/hooks/pre-commit"),
        bash("git config user.name Mallory"),
        bash("git update-ref refs/heads/main HEAD~1"),
        bash("rm -f .git/index"),
    ]
    turn: list[dict[str, Any]] = [text("Trying to escape."), *edits]
    if sandbox == "bwrap":  # unsandboxed, a shell can write anywhere its user can
        turn += shells
    values = {"ANTHROPIC_API_KEY": "sk-ant-api03-" + random_text(40)}
    with FakeAPI(api_key=values["ANTHROPIC_API_KEY"]) as api:
        api.add(
            Message(turn),
            Message([edit("create", "inside.txt", file_text="fine\n")]),
            Message(f"Wrote inside.txt. <promise>{TOKEN}</promise>"),
        )
        proc = run(repo, api, values, sandbox)
        bodies = api.bodies
    assert proc.returncode == 0, proc.stderr
    results = list(unique_results(bodies).values())
    assert len(results) == len(turn) - 1 + 1
    for block in results[: len(edits)]:
        assert block.get("is_error") is True, block
        assert "outside" in block["content"] or ".git" in block["content"], block
    for block in results[len(edits) + 2 : len(turn) - 1]:
        assert "[exit code" in block["content"], block  # the shell's write failed
    assert not Path(f"/usr/pwned-{tmp_path.name}").exists()
    assert outside.read_text() == "original\n"
    assert not (tmp_path / "new.txt").exists() and not (tmp_path / "new2.txt").exists()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert (repo / ".git" / "config").read_text() == git_config
    assert git(repo, "rev-parse", "main") == head
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0 and "error" not in fsck.stderr + fsck.stdout, fsck
    assert git(repo, "status", "--porcelain") == ""
    # The work inside the repository was committed as usual.
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == "inside.txt"


def test_the_runners_home_is_hidden_from_the_sandboxed_agent(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    use_sandbox(request, "bwrap")
    # A credential file no environment variable names, in a runner HOME outside /tmp (which
    # is private anyway): only hiding the home keeps it from the agent.
    home = Path(tempfile.mkdtemp(prefix="ralph-test-home-", dir="/var/tmp"))
    try:
        credential = "cred-" + secrets.token_hex(16)
        (home / ".secret-cred").write_text(credential + "\n")
        repo = make_repo(tmp_path / "repo")
        values = {"ANTHROPIC_API_KEY": "sk-ant-api03-" + random_text(40), "HOME": str(home)}
        with FakeAPI(api_key=values["ANTHROPIC_API_KEY"]) as api:
            api.add(
                Message([bash(f"cat {home}/.secret-cred"), bash(f"ls -A {home}; echo listed")]),
                Message(f"Nothing found. <promise>{TOKEN}</promise>"),
            )
            proc = run(repo, api, values, "bwrap")
            bodies = api.bodies
        assert proc.returncode == 0, proc.stderr
        cat, listing = (str(b["content"]) for b in unique_results(bodies).values())
        assert "No such file or directory" in cat and "[exit code" in cat, cat
        assert listing == "listed", listing  # the commands ran; the home looks empty
        assert credential not in json.dumps(bodies)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --- encoded and split forms --------------------------------------------------------------------

# Unsandboxed, the agent can read the runner's environment: it prints a secret encoded and in
# pieces, the ways a command shows a value without trying to hide it.
READ = r"T=$(tr '\0' '\n' < /proc/$PPID/environ | sed -n 's/^AWS_SECRET_ACCESS_KEY=//p'); "
ENCODED = [
    READ + 'printf %s "$T" | base64 -w0; echo; printf "k:%s" "$T" | base64 -w 16',
    READ + "printf %s \"$T\" | od -An -tx1 | tr -d ' \\n'; echo",
    READ + "python3 -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=\"\"))' \"$T\"",
    READ + 'echo "${T:0:20}"; echo "${T:20}"',
]  # fmt: skip


PIECE = 12  # characters: ralph.redact.FRAGMENT


def forms_of(value: str) -> list[str]:
    """Every PIECE-long piece of the secret's encodings that the commands above print."""
    import base64
    from urllib.parse import quote

    raw = value.encode()
    shown = [value, raw.hex(), quote(value, safe=""), base64.b64encode(raw).decode()]
    shown.append(base64.b64encode(b"k:" + raw).decode()[4:-4])
    return [f[i : i + PIECE] for f in shown for i in range(len(f) - PIECE + 1)]


def test_encoded_and_split_forms_of_a_runner_secret_reach_no_request_or_journal(
    tmp_path: Path,
) -> None:
    values = runner_secrets()
    repo = make_repo(tmp_path / "repo")
    with FakeAPI(api_key=values["ANTHROPIC_API_KEY"]) as api:
        api.add(
            Message([text("Encoding the environment."), *(bash(c) for c in ENCODED)]),
            Message(f"Done. <promise>{TOKEN}</promise>"),
        )
        proc = run(repo, api, values, "none", "--log-format", "json", "--verbose")
        requests = list(api.requests)
    assert proc.returncode == 0, proc.stderr
    results = [str(b["content"]) for b in tool_results([r.json for r in requests])]
    assert len(results) == len(ENCODED) and all(REDACTED in r for r in results), results
    places = {f"request {n}": r.body for n, r in enumerate(requests)}
    places["stderr (JSON logs)"] = proc.stderr.encode()
    for path in sorted((repo / ".ralph").rglob("*")):
        if path.is_file():  # the journal and its WAL, the report
            places[str(path.relative_to(repo))] = path.read_bytes()
    pieces = forms_of(values["AWS_SECRET_ACCESS_KEY"])
    for where, data in places.items():
        leaked = [piece for piece in pieces if piece.encode() in data]
        assert not leaked, f"pieces of AWS_SECRET_ACCESS_KEY leaked into {where}: {leaked[:3]}"

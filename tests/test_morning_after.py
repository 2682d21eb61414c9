"""The morning after, from the user's side: the real CLI on a real repository, interrupted,
killed and resumed; every view (summary, report.md, `ralph show`, `--json`) agrees with git
and with the money spent, names where the work is and what to run next."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BIN, clean_env, git, make_repo, run_cli, run_commits, write_script

TOKEN = "MORNING"
USAGE = {"input_tokens": 1000, "output_tokens": 100}


def create(path: str, text: str = "x\n") -> dict[str, Any]:
    return {"str_replace_based_edit_tool": {"command": "create", "path": path, "file_text": text}}


def block_until(waiting: Path, go: Path) -> dict[str, Any]:
    """A bash call that says it is waiting, then blocks until `go` exists."""
    return {"bash": {"command": f"touch {waiting}; until [ -f {go} ]; do sleep 0.05; done"}}


def setup(tmp_path: Path, iterations: list[Any]) -> tuple[Path, list[str]]:
    """A repository and the ralph-loop arguments of a scripted run on it."""
    repo = make_repo(tmp_path / "repo")
    script = write_script(tmp_path / "s.yaml", iterations)
    prompt = tmp_path / "p.md"
    prompt.write_text(f"Do the steps. <promise>{TOKEN}</promise>\n")
    args = [str(prompt), "--model", f"script:{script}", "--sandbox", "none"]
    return repo, args


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "ralph-loop"), *args, "--log-format", "plain"], cwd=cwd, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ralph-loop ended early ({proc.returncode}):\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def ralph(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd=cwd, command="ralph")


def show_json(repo: Path, run: str = "latest") -> dict[str, Any]:
    proc = ralph(["show", run, "--json"], repo)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def two_step_run(tmp_path: Path, waiting: Path, go: Path) -> tuple[Path, list[str]]:
    """Iteration 1 writes one.md; iteration 2 writes two.md and a.md, then blocks; iteration 3
    writes three.md and promises."""
    return setup(
        tmp_path,
        [
            [{"text": "one", "tools": [create("one.md")], "usage": USAGE},
             {"text": "Did one.", "usage": USAGE}],
            [{"text": "two", "tools": [create("two.md"), create("a.md")], "usage": USAGE},
             {"text": "wait", "tools": [block_until(waiting, go)], "usage": USAGE},
             {"text": "Did two.", "usage": USAGE}],
            [{"text": "three", "tools": [create("three.md")], "usage": USAGE},
             {"text": f"Done. <promise>{TOKEN}</promise>", "usage": USAGE}],
        ],
    )  # fmt: skip


def files_on_branch(repo: Path, base: str, branch: str) -> set[str]:
    return set(git(repo, "diff", "--name-only", base, branch).split())


def test_after_ctrl_c_and_resume_every_view_agrees_with_git_and_the_money(tmp_path: Path) -> None:
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    repo, args = two_step_run(tmp_path, waiting, go)
    proc = start([*args, "--max-iterations", "5"], repo)
    wait_for(waiting, proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while iteration 2 runs a command
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    go.touch()
    resumed = ralph(["resume", "latest"], repo)
    assert resumed.returncode == 0, resumed.stderr

    run = show_json(repo)
    branch, base = run["branch"], run["base_commit"]
    commits = run_commits(repo, branch)
    # git: iteration 2's interrupted attempt committed two.md and a.md, then it ran again.
    assert [c["iteration"] for c in commits] == ["1", "2", "3"]
    assert commits[1]["subject"].endswith("iteration 2 (interrupted)")
    shas = [c["sha"] for c in commits]
    assert run["commits"] == shas  # every commit of the run, the interrupted one included
    assert [c for it in run["iterations_detail"] for c in it["commits"]] == shas
    on_git = files_on_branch(repo, base, branch)
    assert on_git == {"one.md", "two.md", "a.md", "three.md"}
    listed = {f for it in run["iterations_detail"] for f in it["files_changed"]}
    assert listed == on_git
    # Money: the rows add up to the total, which counts every model call (2 + 2 + 3 + 2).
    rows = sum(sum(it["usage"].values()) for it in run["iterations_detail"])
    assert rows == run["tokens"] == 9 * 1100
    second = run["iterations_detail"][1]
    assert second["attempts"] == 2 and sum(second["usage"].values()) == 5 * 1100

    report = (repo / ".ralph" / "runs" / run["id"] / "report.md").read_text()
    for name in on_git:
        assert f"`{name}`" in report, report
    for sha in shas:
        assert sha[:8] in report
    assert f"**{9 * 1100:,}**" in report
    assert f"{len(shas)} commits" in report
    # The closing summary of the resumed process counts the same commits and tokens.
    assert f"{len(shas)} commits" in resumed.stdout and f"{9 * 1100:,}" in resumed.stdout
    text = ralph(["show"], repo).stdout  # no id: the latest run
    assert f"{len(shas)} commit(s)" in text
    assert shas[1][:8] in text


def test_a_killed_iteration_is_shown_as_crashed_with_what_it_spent(tmp_path: Path) -> None:
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    repo, args = two_step_run(tmp_path, waiting, go)
    proc = start([*args, "--max-iterations", "5"], repo)
    wait_for(waiting, proc)
    proc.kill()
    proc.communicate(timeout=60)
    run = show_json(repo)
    assert run["status"] == "crashed"
    last = run["iterations_detail"][-1]
    assert last["number"] == 2 and last["outcome"] == "crashed"
    assert sum(last["usage"].values()) == 2 * 1100  # its two model calls were billed
    assert sum(sum(it["usage"].values()) for it in run["iterations_detail"]) == run["tokens"]
    text = ralph(["show"], repo).stdout
    row = next(line for line in text.splitlines() if line.startswith("2 "))
    assert "crashed" in row and "running" not in row and "2,200" in row


def test_a_refused_promise_is_named_with_its_reason(tmp_path: Path) -> None:
    promised = [[{"text": "w", "tools": [create("n.md")]}, f"All done. <promise>{TOKEN}</promise>"]]
    repo, args = setup(tmp_path, promised)
    proc = run_cli([*args, "--max-iterations", "1", "--verify", "test -f missing.txt"], cwd=repo)
    assert proc.returncode == 3, proc.stderr
    assert "without the promise" not in proc.stdout
    assert f"the promise {TOKEN} was made in iteration 1 and refused" in proc.stdout
    assert "test -f missing.txt" in proc.stdout  # why: the verify command that failed
    run = show_json(repo)
    assert "refused" in run["reason"] and "test -f missing.txt" in run["reason"]
    (made,) = run["promises"]
    assert made["iteration"] == 1 and made["token"] == TOKEN and made["accepted"] is False
    assert any("test -f missing.txt" in reason for reason in made["reasons"])
    text = ralph(["show"], repo).stdout
    assert f"promise   {TOKEN} in iteration 1 refused" in text


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_the_summary_says_where_the_work_is_and_what_to_run_next(
    tmp_path: Path, sandbox: str
) -> None:
    steps = [[{"text": "w", "tools": [create(f"f{i}.md")]}, f"Step {i}."] for i in (1, 2)]
    repo, args = setup(tmp_path, steps)
    args[args.index("--sandbox") + 1] = sandbox
    proc = run_cli([*args, "--max-iterations", "2"], cwd=repo)
    assert proc.returncode == 3, proc.stderr
    run = show_json(repo)
    branch, base = run["branch"], run["base_commit"]
    assert len(run_commits(repo, branch)) == 2
    out = proc.stdout
    assert f"branch: {branch} · 2 commits from {base[:8]}" in out
    assert f"git log --stat {base[:8]}..{branch}" in out
    report = (repo / ".ralph" / "runs" / run["id"] / "report.md").read_text()
    assert f"`{branch}`" in report and "2 commits" in report
    assert f"git log --stat {base[:8]}..{branch}" in report
    if sandbox == "none":
        assert "sandbox: OFF" in out
        assert "Sandbox: **off**" in report and "unsandboxed" in report
    else:
        assert "sandbox: bubblewrap" in out and "Sandbox: bubblewrap" in report


def test_a_worktree_run_names_its_worktree(tmp_path: Path) -> None:
    repo, args = setup(tmp_path, [[{"text": "w", "tools": [create("f.md")]}, "Step."]])
    proc = run_cli([*args, "--max-iterations", "1", "--worktree"], cwd=repo)
    assert proc.returncode == 3, proc.stderr
    run = show_json(repo)
    assert run["worktree"] and f"worktree: {run['worktree']}" in proc.stdout


def test_the_printed_resume_command_works_where_it_is_printed(tmp_path: Path) -> None:
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    repo, args = two_step_run(tmp_path, waiting, go)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = start([*args, "--max-iterations", "5", "--repo", str(repo)], elsewhere)
    wait_for(waiting, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    shown = [line for line in out.splitlines() if line.startswith("resume with: ")]
    assert shown, out
    command = shlex.split(shown[0].removeprefix("resume with: "))
    assert command[:2] == ["ralph", "resume"] and "--repo" in command
    go.touch()
    again = run_cli(command[1:], cwd=elsewhere, command="ralph")  # where it was printed
    assert again.returncode == 0, again.stderr


def test_latest_and_any_unique_fragment_name_a_run(tmp_path: Path) -> None:
    steps = [[{"text": "w", "tools": [create("f.md")]}, "Step."]]
    repo, args = setup(tmp_path, steps)
    assert run_cli([*args, "--max-iterations", "1"], cwd=repo).returncode == 3
    first = show_json(repo)["id"]
    git(repo, "checkout", "-q", "main")
    assert run_cli([*args, "--max-iterations", "1"], cwd=repo).returncode == 3
    runs = json.loads(ralph(["runs", "--json"], repo).stdout)
    newest = runs[0]["id"]
    assert newest != first
    assert show_json(repo)["id"] == newest  # `ralph show` alone: the latest
    assert show_json(repo, "latest")["id"] == newest
    suffix = first.rsplit("-", 1)[1]  # the random end of an id: unique here
    assert show_json(repo, suffix)["id"] == first
    report = ralph(["show", "--report", suffix], repo)
    assert report.returncode == 0 and first in report.stdout
    empty = make_repo(tmp_path / "empty")
    nothing = ralph(["show"], empty)
    assert nothing.returncode == 2 and len(nothing.stderr.strip().splitlines()) == 1

"""The morning after, from the user's side: the real CLI on a real repository, interrupted,
killed and resumed; every view (summary, report.md, `ralph show`, `--json`) agrees with git
and with the money spent, names where the work is and what to run next."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BIN, HANG, clean_env, git, make_repo, run_cli, run_commits, write_script

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


def test_large_and_binary_files_the_commits_add_are_listed(tmp_path: Path) -> None:
    make = (
        "head -c 1500000 /dev/zero | tr '\\0' a > big.txt; printf 'x\\0y' > tiny.bin; "
        "printf '*.dat diff\\n' > .gitattributes; printf 'a\\0b' > data.dat; "
        "printf 'z\\0' > 'see [me](x.test) `now`.bin'; echo small > ok.txt"
    )
    steps = [[{"text": "w", "tools": [{"bash": {"command": make}}]}, "Added files."],
             [{"text": "w", "tools": [{"bash": {"command": "rm tiny.bin"}}]}, "Removed one."]]  # fmt: skip
    repo, args = setup(tmp_path, steps)
    ran = run_cli([*args, "--max-iterations", "2", "--output-format", "json"], cwd=repo)
    assert ran.returncode == 3, ran.stderr
    result = json.loads(ran.stdout)
    listed = {f["path"]: (f["size"], f["binary"]) for f in result["large_files"]}
    # tiny.bin is gone from the tree but not from the history a push would carry.
    assert listed == {
        "big.txt": (1_500_000, False),
        "tiny.bin": (3, True),
        "data.dat": (3, True),  # binary by its bytes, whatever .gitattributes says
        "see [me](x.test) `now`.bin": (2, True),
    }
    first = result["commits"][0][:8]
    report = Path(result["report"]).read_text()
    section = report.split("### Large or binary files", 1)[1].split("###", 1)[0]
    assert f"- `big.txt` — 1.5 MB (commit `{first}`)" in section
    assert "- `tiny.bin` — 3 B, binary" in section and "ok.txt" not in section
    assert "- ``see [me](x.test) `now`.bin`` — 2 B, binary" in section  # shown, not rendered
    text = run_cli([*args, "--max-iterations", "1"], cwd=make_repo(tmp_path / "again"))
    assert "large or binary files committed: big.txt (1.5 MB)" in text.stdout


def test_after_ctrl_c_and_resume_every_view_agrees_with_git_and_the_money(tmp_path: Path) -> None:
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    repo, args = two_step_run(tmp_path, waiting, go)
    proc = start([*args, "--max-iterations", "5"], repo)
    wait_for(waiting, proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while iteration 2 runs a command
    proc.communicate(timeout=HANG)
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
    proc.communicate(timeout=HANG)
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
    out, _ = proc.communicate(timeout=HANG)
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


# --- under faults ----------------------------------------------------------------------------


def test_a_signal_after_the_run_ended_still_writes_report_and_summary(tmp_path: Path) -> None:
    repo, args = setup(tmp_path, [[{"text": "w", "tools": [create("f.md")]}, "Step."]])
    proc = subprocess.Popen(
        [str(BIN / "ralph-loop"), *args, "--max-iterations", "1", "--log-format", "json"],
        cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if json.loads(line).get("event") == "run_ended":
            proc.send_signal(signal.SIGTERM)  # while the report and summary are written
            break
    out, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 3, out  # the run's code (max iterations), not -15
    run = show_json(repo)
    assert "report: " in out and run["id"] in out
    assert (repo / ".ralph" / "runs" / run["id"] / "report.md").is_file()


def git_wrapper(tmp_path: Path) -> tuple[dict[str, str], Path, Path, Path]:
    """A `git` first on PATH that, once armed, holds ralph's next `git status` until told."""
    arm, ready, go = tmp_path / "arm", tmp_path / "ready", tmp_path / "go"
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ -f {arm} ]; then case " $* " in *" status "*)\n'
        f"  rm -f {arm}; touch {ready}; while [ ! -f {go} ]; do sleep 0.05; done;;\n"
        "esac; fi\n"
        f'exec {real.stdout.strip()} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    return env, arm, ready, go


def test_ctrl_c_while_ralph_runs_git_interrupts_the_run_cleanly(tmp_path: Path) -> None:
    """Ctrl-C signals the terminal's whole process group: ralph's own git must not die of it."""
    env, arm, ready, go = git_wrapper(tmp_path)
    steps = [
        [{"text": "w", "tools": [create("f.md"), {"bash": {"command": f"touch {arm}"}}]}, "One."],
        [{"text": "w", "tools": [create("g.md")]}, "Two."],
    ]
    repo, args = setup(tmp_path, steps)
    proc = subprocess.Popen(
        [str(BIN / "ralph-loop"), *args, "--max-iterations", "2", "--log-format", "plain"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job is
    )  # fmt: skip
    wait_for(ready, proc)  # ralph's `git status` at the end of iteration 1 is running
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
    time.sleep(0.2)  # let the signal land before git goes on (either order must end as 130)
    go.touch()
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, err
    assert "git status failed" not in err
    run = show_json(repo)
    assert run["status"] == "interrupted"
    branch = run["branch"]
    assert [c["iteration"] for c in run_commits(repo, branch)] == ["1"]  # its work committed


def interrupted_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run stopped by SIGINT in iteration 2; the repository and the file that unblocks it."""
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    repo, args = two_step_run(tmp_path, waiting, go)
    proc = start([*args, "--max-iterations", "5"], repo)
    wait_for(waiting, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=HANG)
    assert proc.returncode == 130
    go.touch()
    return repo, go


def test_resume_removes_an_index_lock_no_process_holds(tmp_path: Path) -> None:
    repo, _ = interrupted_run(tmp_path)
    lock = repo / ".git" / "index.lock"
    lock.write_text("")  # what a git killed by the same Ctrl-C leaves
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(lock)!r}); import time; time.sleep(60)"]
    )
    try:
        deadline = time.monotonic() + HANG
        while str(lock) not in [os.readlink(p) for p in Path(f"/proc/{holder.pid}/fd").iterdir()]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        busy = ralph(["resume", "latest"], repo)  # a live process has it open: not ours
        assert busy.returncode == 2 and "index.lock" in busy.stderr
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()
    resumed = ralph(["resume", "latest"], repo)
    assert resumed.returncode == 0, resumed.stderr
    assert not lock.exists()


def test_resume_after_a_kill_between_commit_and_journal_makes_no_duplicate_commit(
    tmp_path: Path,
) -> None:
    from ralph.git.commits import commit_message

    waiting, go = tmp_path / "waiting", tmp_path / "go"
    # Iteration 2 appends to a log each time it runs: run again, it would commit again.
    repo, args = setup(
        tmp_path,
        [
            [{"text": "one", "tools": [create("one.md")]}, "Did one."],
            [{"text": "two", "tools": [{"bash": {"command": "echo ran >> two.log"}}]},
             {"text": "wait", "tools": [block_until(waiting, go)]},
             "Did two."],
            [{"text": "three", "tools": [create("three.md")]},
             f"Done. <promise>{TOKEN}</promise>"],
        ],
    )  # fmt: skip
    proc = start([*args, "--max-iterations", "5"], repo)
    wait_for(waiting, proc)
    proc.kill()
    proc.communicate(timeout=HANG)
    run = show_json(repo)
    # The state a SIGKILL right after iteration 2's commit leaves: the commit on the branch,
    # made as ralph makes it, and no journal row saying the iteration ended.
    git(repo, "add", "-A")
    message = commit_message("p", 2, 5, "Did two.", run["id"])
    git(repo, "commit", "-q", "-m", message)
    go.touch()
    resumed = ralph(["resume", "latest"], repo)
    assert resumed.returncode == 0, resumed.stderr
    commits = run_commits(repo, run["branch"])
    assert [c["iteration"] for c in commits] == ["1", "2", "3"]  # iteration 2 not run again
    done = show_json(repo)
    assert [it["outcome"] for it in done["iterations_detail"]] == ["ended"] * 3
    assert done["iterations_detail"][1]["commits"] == [commits[1]["sha"]]
    assert done["iterations_detail"][1]["files_changed"] == ["two.log"]
    assert (repo / "two.log").read_text() == "ran\n"


def test_a_kill_as_the_checkout_switches_to_the_run_branch_leaves_a_run_to_resume(
    tmp_path: Path,
) -> None:
    """SIGKILL right after ralph's `git checkout -b ralph/…`, before it goes on: the run is in
    the journal already, so `ralph resume` continues it (no branch nothing knows)."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(
        "#!/bin/sh\n"
        f'{real.stdout.strip()} "$@"; rc=$?\n'
        'case " $* " in *" checkout -q -b ralph/"*)\n'
        f"  touch {ready}; while [ ! -f {go} ]; do sleep 0.05; done;;\n"
        "esac\nexit $rc\n"
    )
    (bin_dir / "git").chmod(0o755)
    env = clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    steps = [[{"text": "w", "tools": [create("f.md")]}, f"Done. <promise>{TOKEN}</promise>"]]
    repo, args = setup(tmp_path, steps)
    proc = subprocess.Popen(
        [str(BIN / "ralph-loop"), *args, "--max-iterations", "2", "--log-format", "plain"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(ready, proc)  # the checkout is on the new branch; ralph waits for git
    proc.kill()
    proc.communicate(timeout=60)
    go.touch()
    branch = git(repo, "branch", "--show-current")
    assert branch.startswith("ralph/")  # where the kill left the checkout
    runs = json.loads(ralph(["runs", "--json"], repo).stdout)
    assert [(r["branch"], r["status"]) for r in runs] == [(branch, "crashed")]
    killed = runs[0]["id"]
    # Starting anew from there, the user is told which run that branch is and how to go on.
    again = run_cli([*args, "--max-iterations", "1"], cwd=repo)
    assert again.returncode == 0, again.stderr
    assert f"the branch of run {killed}, which did not end (crashed)" in again.stderr
    assert f"ralph resume {killed}" in again.stderr
    resumed = ralph(["resume", killed], repo)
    assert resumed.returncode == 0, resumed.stderr
    run = show_json(repo, killed)
    assert run["status"] == "completed" and run["branch"] == branch and run["sessions"] == 1
    assert [c["iteration"] for c in run_commits(repo, branch)] == ["1"]
    assert git(repo, "branch", "--show-current") == branch


def test_a_run_removes_the_private_homes_that_killed_runs_left(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no live process has
    dead = tmp / f"ralph-home-{gone.pid}-abcd1234"
    (dead / "home").mkdir(parents=True)
    (dead / "home" / ".bash_history").write_text("secret work\n")
    live = tmp / f"ralph-home-{os.getpid()}-efgh5678"  # a live process's: left alone
    (live / "home").mkdir(parents=True)
    repo, args = setup(tmp_path, [[{"text": "w", "tools": [{"bash": {"command": "pwd"}}]}, "Ok."]])
    env = clean_env(TMPDIR=str(tmp))
    proc = run_cli([*args, "--max-iterations", "1"], cwd=repo, env=env)
    assert proc.returncode == 3, proc.stderr
    assert not dead.exists()
    assert live.is_dir()
    assert sorted(p.name for p in tmp.iterdir()) == [live.name]  # its own HOME is gone too


# --- output conventions ----------------------------------------------------------------------


def test_version_short_help_and_click_errors_are_one_line(tmp_path: Path) -> None:
    from ralph import __version__

    for command in ("ralph", "ralph-loop"):
        shown = run_cli(["--version"], cwd=tmp_path, command=command)
        assert shown.returncode == 0 and shown.stdout == f"{command} {__version__}\n"
    assert "Usage: ralph-loop" in run_cli(["-h"], cwd=tmp_path).stdout
    assert "Usage: ralph show" in ralph(["show", "-h"], tmp_path).stdout
    for command, args in [
        ("ralph-loop", ["--bogus", "x"]),
        ("ralph-loop", ["--max-iterations", "abc", "x"]),
        ("ralph", ["show", "--nope"]),
        ("ralph", ["nosuchcommand"]),
    ]:
        proc = run_cli(args, cwd=tmp_path, command=command)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"{command}: error: ") and f"{command} --help" in line


def test_plain_logs_show_a_tool_call_starting_and_a_heartbeat_while_it_runs() -> None:
    import io

    from ralph.events import Event
    from ralph.views.plain import PlainLines

    out = io.StringIO()
    view = PlainLines(out, heartbeat_s=0.05)
    command = {"command": "pytest -q"}
    view.handle(Event("tool_started", "r1", 1, {"tool": "bash", "input": command}))
    deadline = time.monotonic() + HANG
    while out.getvalue().count("still running") < 2:
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.01)
    view.handle(Event("tool_finished", "r1", 1, {"tool": "bash", "input": command, "exit_code": 0}))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("[1] bash: pytest -q started")
    assert "[1] bash: pytest -q still running (" in lines[1]
    assert lines[-1].endswith("bash: pytest -q -> ok in -")
    settled = out.getvalue()
    time.sleep(0.2)  # (four beats' time) no heartbeat after the call ended
    assert out.getvalue() == settled


def test_a_piped_summary_is_not_cut_to_80_columns(tmp_path: Path) -> None:
    said = "Added rate limiting to every login endpoint and a regression test for each of them."
    repo, args = setup(tmp_path, [[{"text": "w", "tools": [create("f.md")]}, said]])
    env = {k: v for k, v in clean_env().items() if k != "COLUMNS"}
    proc = run_cli([*args, "--max-iterations", "1"], cwd=repo, env=env)
    assert proc.returncode == 3, proc.stderr
    assert said[:72] in proc.stdout  # the iteration's summary (its commit subject's length)
    run = show_json(repo)
    assert f"report: {repo / '.ralph' / 'runs' / run['id'] / 'report.md'}" in proc.stdout


def test_the_live_views_last_frame_shows_how_each_tool_call_ended() -> None:
    import io

    from rich.console import Console

    from ralph.events import Event
    from ralph.views.live import LiveView

    console = Console(file=io.StringIO(), width=100, force_terminal=True)
    view = LiveView(console, auto_refresh=False)
    events = [
        Event("run_started", "r1", None, {"prompt_name": "p", "model": "m", "max_iterations": 3}),
        Event("iteration_started", "r1", 1, {"max_iterations": 3}),
        Event("tool_started", "r1", 1, {"tool": "bash", "input": {"command": "ls"}, "tool_use_id": "a"}),
        Event("tool_finished", "r1", 1, {"tool": "bash", "input": {"command": "ls"}, "tool_use_id": "a", "exit_code": 0, "duration_s": 0.1}),
        Event("tool_started", "r1", 1, {"tool": "bash", "input": {"command": "sleep 100"}, "tool_use_id": "b"}),
        Event("iteration_ended", "r1", 1, {"outcome": "interrupted", "summary": "interrupted"}),
        Event("run_ended", "r1", None, {"status": "interrupted", "reason": "interrupted by a signal"}),
    ]  # fmt: skip
    for event in events:
        view.handle(event)
    frame = io.StringIO()
    Console(file=frame, width=100, color_system=None).print(view.render())
    text = frame.getvalue()
    assert "✓ bash: ls · ok" in text
    assert "✗ bash: sleep 100 · not finished (interrupted)" in text
    assert "running" not in text.replace("run ", "")


# --- getting it ------------------------------------------------------------------------------


def test_init_leads_to_a_working_first_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = ralph(["init"], repo)
    assert first.returncode == 0, first.stderr
    assert "next: " in first.stdout and "ralph-loop security" in first.stdout
    assert git(repo, "status", "--porcelain") == ""  # committed: the next run is not refused
    assert git(repo, "log", "-1", "--format=%s") == "ralph init: ralph.yaml"
    more = ralph(["init", "--prompts"], repo)  # after init, no --force needed
    assert more.returncode == 0, more.stderr
    assert (repo / "prompts" / "security.md").is_file()
    assert git(repo, "status", "--porcelain") == ""
    assert "ralph-loop prompts/security.md" in more.stdout
    again = ralph(["init", "--prompts"], repo)  # everything exists: say how to overwrite
    assert again.returncode == 2 and "--force" in again.stderr
    script = write_script(tmp_path / "s.yaml", [[{"text": "w", "tools": [create("f.md")]}, "Ok."]])
    run = run_cli(
        ["security", "--model", f"script:{script}", "--sandbox", "none", "--max-iterations", "1"],
        cwd=repo,
    )
    assert run.returncode == 3, run.stderr  # it ran (no promise in one iteration)
    assert "uncommitted changes" not in run.stderr


def test_the_distribution_name_is_free_and_the_commands_are_kept() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] != "ralph-loop"  # on PyPI, another project's
    assert set(project["scripts"]) == {"ralph-loop", "ralph"}
    readme = (root / "README.md").read_text()
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert project["name"] in install and "ralph init" in install


# --- continuing ------------------------------------------------------------------------------


def test_a_run_that_hit_max_iterations_goes_on_with_more(tmp_path: Path) -> None:
    steps = [[{"text": "w", "tools": [create(f"f{i}.md")]}, f"Step {i}."] for i in (1, 2, 3)]
    steps.append([{"text": "w", "tools": [create("f4.md")]}, f"Done. <promise>{TOKEN}</promise>"])
    repo, args = setup(tmp_path, steps)
    first = run_cli([*args, "--max-iterations", "1"], cwd=repo)
    assert first.returncode == 3, first.stderr
    run_id = show_json(repo)["id"]
    assert f"ralph resume {run_id} --more 5" in first.stdout  # the summary says how to go on
    refused = ralph(["resume", run_id], repo)  # without --more: finished, and says how
    assert refused.returncode == 2 and "--more N" in refused.stderr
    git(repo, "checkout", "-q", "main")  # the morning after: back on your own branch
    more = ralph(["resume", run_id, "--more", "2"], repo)
    assert more.returncode == 3, more.stderr  # two more iterations, still no promise
    run = show_json(repo)
    assert run["id"] == run_id and len(json.loads(ralph(["runs", "--json"], repo).stdout)) == 1
    assert [it["number"] for it in run["iterations_detail"]] == [1, 2, 3]
    assert [c["iteration"] for c in run_commits(repo, run["branch"])] == ["1", "2", "3"]
    assert run["sessions"] == 2 and "--max-iterations 3" in run["reason"]
    done = ralph(["resume", "latest", "--more", "1"], repo)
    assert done.returncode == 0, done.stderr
    assert show_json(repo)["status"] == "completed"
    finished = ralph(["resume", "latest", "--more", "1"], repo)
    assert finished.returncode == 2 and "completed" in finished.stderr


def test_more_takes_larger_budgets_from_the_operator_and_never_from_the_repository(
    tmp_path: Path,
) -> None:
    import sqlite3

    from ralph.settings import DEFAULT_MODEL

    steps = [
        [{"text": "w", "tools": [create(f"f{i}.md")], "usage": USAGE},
         {"text": f"Step {i}." if i < 4 else f"Done. <promise>{TOKEN}</promise>", "usage": USAGE}]
        for i in (1, 2, 3, 4)
    ]  # fmt: skip
    repo, args = setup(tmp_path, steps)
    write_script(tmp_path / "s.yaml", steps, model=DEFAULT_MODEL)  # priced: --max-cost works
    # A ralph.yaml (the agent could have written it) that would lift the budget if read.
    (repo / "ralph.yaml").write_text("max_tokens: 1000000\n")
    git(repo, "add", "ralph.yaml")
    git(repo, "commit", "-q", "-m", "config")
    ran = run_cli([*args, "--max-iterations", "3", "--max-tokens", "3000"], cwd=repo)
    assert ran.returncode == 4, ran.stderr  # 2,200 tokens an iteration: out in iteration 2
    run_id = show_json(repo)["id"]
    assert f"ralph resume {run_id} --max-tokens 6000\n" in ran.stdout  # how to go on
    same = ralph(["resume", run_id, "--more", "1"], repo)  # no new budget: still spent
    assert same.returncode == 4, same.stderr
    assert "token budget used: 3,300 of 3,000" in show_json(repo)["reason"]
    spent = ralph(["resume", run_id, "--max-tokens", "3000"], repo)
    assert spent.returncode == 2 and "--max-tokens 3000 leaves nothing to spend" in spent.stderr
    bad = ralph(["resume", run_id, "--timeout", "soon"], repo)
    assert bad.returncode == 2 and bad.stderr.startswith("ralph: error: --timeout")
    raised = ralph(
        ["resume", run_id, "--more", "2", "--max-tokens", "20000", "--max-cost", "5",
         "--timeout", "1h"], repo,
    )  # fmt: skip
    assert raised.returncode == 0, raised.stderr  # the promise, in the same run
    run = show_json(repo)
    assert run["id"] == run_id and run["status"] == "completed" and run["sessions"] == 3
    assert "tokens 7,700/20,000" in raised.stdout and "/$5.00" in raised.stdout
    report = (repo / ".ralph" / "runs" / run_id / "report.md").read_text()
    assert "20,000" in report and "$5.00" in report
    db = sqlite3.connect(repo / ".ralph" / "ralph.db")
    started = [json.loads(row[0]) for row in db.execute(
        "SELECT data FROM events WHERE run_id = ? AND name = 'run_started' ORDER BY id", (run_id,)
    )]  # fmt: skip
    config = json.loads(db.execute("SELECT config FROM runs").fetchone()[0])
    db.close()
    assert started[-1]["budgets_changed"] == {
        "max_tokens": {"was": 3000, "now": 20000},
        "max_cost": {"was": None, "now": 5.0},
        "timeout": {"was": None, "now": 3600.0},
    }
    assert not started[1]["budgets_changed"]  # the resume that raised nothing
    assert (config["max_tokens"], config["max_cost"], config["timeout"]) == (20000, 5.0, 3600.0)
    # The same flags on `ralph-loop --resume`; a completed run has nothing to go on with.
    done = run_cli(["--resume", run_id, "--max-cost", "9"], cwd=repo)
    assert done.returncode == 2 and "completed" in done.stderr


def test_resume_takes_the_display_options_and_their_variables(tmp_path: Path) -> None:
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    repo, args = two_step_run(tmp_path, waiting, go)
    proc = start([*args, "--max-iterations", "5"], repo)
    wait_for(waiting, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=HANG)
    assert proc.returncode == 130
    go.touch()
    env = clean_env(RALPH_LOG_FORMAT="json")  # honoured by resume, as by a run
    resumed = run_cli(["resume", "latest", "--verbose"], cwd=repo, command="ralph", env=env)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in resumed.stderr.splitlines()]
    assert records[0]["event"] == "run_started" and records[-1]["event"] == "run_ended"
    finished = [r for r in records if r["event"] == "tool_finished"]
    assert finished and all("output" in r for r in finished)
    quiet = ralph(["resume", "latest", "--quiet", "--log-format", "plain"], repo)
    assert quiet.returncode == 2 and quiet.stderr.startswith("ralph: error: ")  # completed
    bad = run_cli(["resume", "latest", "--log-format", "fancy"], cwd=repo, command="ralph")
    assert bad.returncode == 2 and "--log-format" in bad.stderr


def test_costs_in_json_logs_are_rounded() -> None:
    import io

    from ralph.events import Event
    from ralph.views.logs import JsonLines

    out = io.StringIO()
    cost = 0.1 + 0.2  # 0.30000000000000004 in binary floating point
    JsonLines(out).handle(Event("run_ended", "r1", None, {"status": "completed", "cost_usd": cost}))
    line = out.getvalue()
    assert '"cost_usd": 0.3,' in line or '"cost_usd": 0.3}' in line


# --- what runs leave behind ------------------------------------------------------------------


def test_a_run_that_changed_nothing_leaves_no_branch(tmp_path: Path) -> None:
    repo, args = setup(tmp_path, [["Looked around; nothing to change."]])
    proc = run_cli([*args, "--max-iterations", "1"], cwd=repo)
    assert proc.returncode == 3, proc.stderr
    assert git(repo, "branch", "--list", "ralph/*") == ""
    assert git(repo, "branch", "--show-current") == "main"  # the checkout is back
    assert "was removed" in proc.stderr
    # Continuing it makes the branch again, from where it was made.
    more = ralph(["resume", "latest", "--more", "1"], repo)
    assert more.returncode == 3, more.stderr


def test_a_resumed_run_that_changed_nothing_leaves_no_branch(tmp_path: Path) -> None:
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    repo, args = setup(tmp_path, [[{"text": "w", "tools": [block_until(waiting, go)]}, "Nothing."]])
    proc = start([*args, "--max-iterations", "1"], repo)
    wait_for(waiting, proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C before the run changed anything
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    go.touch()
    resumed = ralph(["resume", "latest"], repo)
    assert resumed.returncode == 3, resumed.stderr
    assert "was removed and the checkout is back on main" in resumed.stderr
    assert git(repo, "branch", "--list", "ralph/*") == ""
    assert git(repo, "branch", "--show-current") == "main"


def test_clean_removes_what_finished_runs_left_but_never_unpushed_work(tmp_path: Path) -> None:
    steps = [[{"text": "w", "tools": [create("f.md")]}, "Step."]]
    repo, args = setup(tmp_path, steps)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(repo, "remote", "add", "origin", str(remote))
    assert run_cli([*args, "--max-iterations", "1", "--worktree"], cwd=repo).returncode == 3
    run = show_json(repo)
    worktree, branch = Path(run["worktree"]), run["branch"]
    assert worktree.is_dir()
    listed = ralph(["clean", "--dry-run"], repo)
    assert listed.returncode == 0 and f"would remove worktree {worktree}" in listed.stdout
    assert worktree.is_dir()
    first = ralph(["clean"], repo)
    assert first.returncode == 0, first.stderr
    assert not worktree.exists()
    assert f"kept branch {branch}" in first.stdout and "push or merge" in first.stdout
    assert git(repo, "branch", "--list", branch)  # its commit is nowhere else: kept
    git(repo, "push", "-q", "origin", branch)
    git(repo, "fetch", "-q", "origin")
    second = ralph(["clean"], repo)
    assert f"removed branch {branch}" in second.stdout
    assert git(repo, "branch", "--list", branch) == ""

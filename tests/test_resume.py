"""Resume: a run killed mid-iteration (SIGKILL) continues with nothing lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.helpers import (
    BIN,
    clean_env,
    git,
    make_repo,
    only_run,
    run_cli,
    run_commits,
    write_script,
)

TOKEN = "RESILIENT"


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def create(path: str, text: str) -> dict[str, object]:
    return {"str_replace_based_edit_tool": {"command": "create", "path": path, "file_text": text}}


def test_sigkill_mid_iteration_then_resume(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    # Iteration 2 writes a file, then blocks in a tool until the test says go: it is killed there.
    script = write_script(
        tmp_path / "s.yaml",
        [
            [{"text": "one", "tools": [create("one.md", "1\n")]}, "Did step one."],
            [
                {"text": "two", "tools": [create("two.md", "2\n")]},
                {
                    "text": "waiting",
                    "tools": [
                        {
                            "bash": {
                                "command": f"touch {waiting}; until [ -f {go} ]; do sleep 0.05; done; "
                                "echo finished >> two.log"
                            }
                        }
                    ],
                },
                "Did step two.",
            ],
            [
                {"text": "three", "tools": [create("three.md", "3\n")]},
                f"Done. <promise>{TOKEN}</promise>",
            ],
        ],
    )
    (tmp_path / "p.md").write_text(f"Do three steps. <promise>{TOKEN}</promise>\n")
    args = [
        str(tmp_path / "p.md"),
        "--model",
        f"script:{script}",
        "--sandbox",
        "none",
        "--max-iterations",
        "5",
    ]
    proc = subprocess.Popen(
        [str(BIN / "ralph-loop"), *args], cwd=repo, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(waiting, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    branch = git(repo, "branch", "--show-current")
    first = run_commits(repo, branch)
    assert [c["iteration"] for c in first] == ["1"]
    assert (repo / "two.md").exists()  # the dead iteration's work, uncommitted

    # Its process is gone (nobody holds the run's lock), so the journal's "running" is shown
    # as crashed; `ralph show` says how to resume it.
    runs = json.loads(run_cli(["runs", "--json"], cwd=repo, command="ralph").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "crashed"
    assert "crashed" in run_cli(["runs"], cwd=repo, command="ralph").stdout
    shown = run_cli(["show", runs[0]["id"]], cwd=repo, command="ralph").stdout
    assert "status    crashed" in shown and f"ralph resume {runs[0]['id']}" in shown
    run_id = runs[0]["id"]

    # A finished lock holder is gone, so resume may take the run.
    go.touch()
    resumed = run_cli(["resume", run_id[:12]], cwd=repo, command="ralph")
    assert resumed.returncode == 0, resumed.stderr

    commits = run_commits(repo, branch)
    assert commits[0] == first[0]  # earlier history intact
    subjects = [c["subject"] for c in commits]
    assert subjects[1] == "ralph(p): iteration 2 (interrupted)"
    assert git(repo, "show", "--name-only", "--format=", commits[1]["sha"]) == "two.md"
    assert [c["iteration"] for c in commits] == ["1", "2", "2", "3"]  # iteration 2 ran again
    assert (repo / "two.log").read_text() == "finished\n"
    assert (repo / "three.md").read_text() == "3\n"

    shown = json.loads(run_cli(["show", run_id, "--json"], cwd=repo, command="ralph").stdout)
    assert shown["status"] == "completed"
    numbers = [it["number"] for it in shown["iterations_detail"]]
    assert numbers == [1, 2, 3]  # no duplicated or missing iteration

    again = run_cli(["resume", run_id], cwd=repo, command="ralph")
    assert again.returncode == 2 and "already finished" in again.stderr


def test_resume_unknown_run_is_a_usage_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    proc = run_cli(["--resume", "nope"], cwd=repo)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_two_processes_never_run_the_same_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    script = write_script(
        tmp_path / "s.yaml",
        [
            [
                {
                    "text": "w",
                    "tools": [
                        {
                            "bash": {
                                "command": f"touch {waiting}; until [ -f {go} ]; do sleep 0.05; done"
                            }
                        }
                    ],
                },
                "x",
            ]
        ],
    )
    proc = subprocess.Popen(
        [str(BIN / "ralph-loop"), "go <promise>X</promise>", "--model", f"script:{script}",
         "--sandbox", "none", "--max-iterations", "1"],
        cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(waiting, proc)
        run_id = json.loads(run_cli(["runs", "--json"], cwd=repo, command="ralph").stdout)[0]["id"]
        clash = run_cli(["resume", run_id], cwd=repo, command="ralph")
        assert clash.returncode == 2 and "already running" in clash.stderr
    finally:
        go.touch()
        proc.wait(timeout=30)
    assert os.path.exists(repo / ".ralph")


def start_run(repo: Path, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "ralph-loop"), *args], cwd=repo, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def journal_rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(repo / ".ralph" / "ralph.db")
    try:
        return [tuple(row) for row in db.execute(sql)]
    finally:
        db.close()


def test_killed_twice_each_leftover_commit_is_filed_under_its_own_attempt(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    # Every attempt of iteration 1 adds a line to work.txt, then blocks until the test says go
    # for that attempt: attempts 1 and 2 are killed there, each leaving a line uncommitted.
    wait = (
        "echo line >> work.txt; n=$(wc -l < work.txt); "
        f"touch {tmp_path}/waiting$n; until [ -f {tmp_path}/go$n ]; do sleep 0.05; done"
    )
    script = write_script(
        tmp_path / "s.yaml",
        [[{"text": "work", "tools": [{"bash": {"command": wait}}]}, f"Done. <promise>{TOKEN}</promise>"]],
    )  # fmt: skip
    (tmp_path / "go3").touch()  # the third attempt runs through
    prompt = tmp_path / "p.md"
    prompt.write_text(f"Work. <promise>{TOKEN}</promise>\n")
    args = [str(prompt), "--model", f"script:{script}", "--sandbox", "none"]
    try:
        proc = start_run(repo, [*args, "--max-iterations", "3"])
        wait_for(tmp_path / "waiting1", proc)
        proc.kill()
        proc.wait(timeout=10)
        run_id = json.loads(run_cli(["runs", "--json"], cwd=repo, command="ralph").stdout)[0]["id"]
        proc = start_run(repo, ["--resume", run_id])
        wait_for(tmp_path / "waiting2", proc)
        proc.kill()
        proc.wait(timeout=10)
        resumed = run_cli(["resume", run_id], cwd=repo, command="ralph")
        assert resumed.returncode == 0, resumed.stderr
    finally:
        for n in (1, 2):  # unsandboxed, a killed run's command outlives it: let it end
            (tmp_path / f"go{n}").touch()

    branch = git(repo, "branch", "--show-current")
    commits = run_commits(repo, branch)
    assert [c["subject"] for c in commits] == [
        "ralph(p): iteration 1 (interrupted)",
        "ralph(p): iteration 1 (interrupted)",
        "ralph(p): iteration 1/3 — Done.",
    ]
    rows = journal_rows(
        repo,
        "SELECT attempt, outcome, commit_sha FROM iterations WHERE number = 1 ORDER BY attempt",
    )
    # Each attempt's work is referenced once, from the attempt that did it.
    assert rows == [
        (1, "interrupted", commits[0]["sha"]),
        (2, "interrupted", commits[1]["sha"]),
        (3, "ended", commits[2]["sha"]),
    ]


def test_a_runtime_error_ends_the_run_as_error_and_it_stays_resumable(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    mark = tmp_path / "switched"
    # The first time, the agent switches branches: ralph then refuses to commit (RalphError).
    command = (
        f"[ -e {mark} ] || {{ touch {mark}; git checkout -q -b elsewhere; }}; echo x > work.txt"
    )
    script = write_script(
        tmp_path / "s.yaml",
        [[{"text": "work", "tools": [{"bash": {"command": command}}]}, f"Done. <promise>{TOKEN}</promise>"]],
    )  # fmt: skip
    prompt = tmp_path / "p.md"
    prompt.write_text(f"Work. <promise>{TOKEN}</promise>\n")
    args = [
        str(prompt),
        "--model",
        f"script:{script}",
        "--sandbox",
        "none",
        "--max-iterations",
        "2",
    ]
    failed = run_cli(args, cwd=repo)
    assert failed.returncode == 1, failed.stderr
    assert "not the run's branch" in failed.stderr

    run = only_run(repo)
    assert (run["status"], run["exit_code"]) == ("error", 1)
    assert "not the run's branch" in run["reason"]
    first = run["iterations_detail"][0]
    assert first["outcome"] == "error" and "not the run's branch" in first["error"]
    shown = run_cli(["show", run["id"]], cwd=repo, command="ralph").stdout
    assert f"ralph resume {run['id']}" in shown

    git(repo, "switch", "-q", run["branch"])  # put things right (work.txt comes along)...
    resumed = run_cli(["resume", run["id"]], cwd=repo, command="ralph")  # ...and carry on
    assert resumed.returncode == 0, resumed.stderr
    run = only_run(repo)
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert [(it["number"], it["attempts"], it["outcome"]) for it in run["iterations_detail"]] == [
        (1, 2, "ended")
    ]
    commits = run_commits(repo, run["branch"])
    assert [c["subject"] for c in commits] == ["ralph(p): iteration 1 (interrupted)"]
    assert git(repo, "show", "--name-only", "--format=", commits[0]["sha"]) == "work.txt"


def test_a_run_stopped_by_an_authentication_error_reruns_that_iteration(tmp_path: Path) -> None:
    from tests.fakeapi import FakeAPI, Message

    key = "sk-ant-api03-resume-test-key-0000000000"
    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "p.md"
    prompt.write_text(f"Work. <promise>{TOKEN}</promise>\n")
    with FakeAPI(api_key=key) as api:
        api.add(Message(f"Done. <promise>{TOKEN}</promise>"))
        env = {k: v for k, v in clean_env().items() if not k.startswith("ANTHROPIC_")}
        env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="sk-ant-api03-wrong-key-000")
        args = [str(prompt), "--sandbox", "none", "--max-iterations", "1"]
        failed = run_cli(args, cwd=repo, env=env)
        assert failed.returncode == 1 and "authentication failed" in failed.stderr
        run = only_run(repo)
        assert run["status"] == "error"
        assert [it["outcome"] for it in run["iterations_detail"]] == ["failed"]

        env["ANTHROPIC_API_KEY"] = key  # the key is put right: iteration 1 runs again
        resumed = run_cli(["resume", run["id"]], cwd=repo, command="ralph", env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert len(api.requests) == 2  # the refused call, then the real one
    run = only_run(repo)
    assert run["status"] == "completed" and run["sessions"] == 2
    assert [(it["number"], it["attempts"], it["outcome"]) for it in run["iterations_detail"]] == [
        (1, 2, "ended")
    ]

"""Operating a run from another process, as a person at a second terminal would: `ralph watch`
follows it, `ralph stop` ends it after its iteration (committed, resumable, exit 130),
`ralph steer` guidance reaches the next request the model server receives and the report."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from tests.fakeapi import FakeAPI, Message, Recorded, Reply, text, tool_use
from tests.helpers import BIN, HANG, clean_env, git, make_repo, run_cli, run_commits

PROMPT = "Harden this repository. Output <promise>DONE</promise> when done."


def wait_for(check: object, what: str, timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def user_text(req: Recorded) -> str:
    content = req.json["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def test_stop_watch_steer_and_resume_from_other_processes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    # A final message is held until the test lets one through (one permit per iteration).
    permits = threading.Semaphore(0)

    def responder(req: Recorded) -> Reply:
        # Each iteration: one bash call that writes a file, then (held until the test lets go)
        # a final message without the promise.
        turn = len(req.json["messages"])
        n = sum(1 for r in api.requests if len(r.json["messages"]) == 1)
        if turn == 1:
            return Message([tool_use("bash", {"command": f"echo {n} > step{n}.txt"})])
        permits.acquire(timeout=HANG)
        return Message([text(f"Wrote step{n}.txt.")])

    with FakeAPI(responder=responder) as api:
        env = clean_env(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="test-key")
        run = subprocess.Popen(
            [str(BIN / "ralph-loop"), PROMPT, "--max-iterations", "5", "--log-format", "plain"],
            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: len(api.requests) >= 2, "iteration 1's second model call")
            runs = json.loads(run_cli(["runs", "--json"], cwd=repo, command="ralph").stdout)
            run_id = runs[0]["id"]
            assert runs[0]["status"] == "running"
            table = run_cli(["runs"], cwd=repo, command="ralph", env=env).stdout
            assert f"running (pid {run.pid})" in table
            watch = subprocess.Popen(
                [str(BIN / "ralph"), "watch", "--log-format", "plain"],
                cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            stop = run_cli(["stop", run_id[:15]], cwd=repo, command="ralph", env=env)
            assert stop.returncode == 0, stop.stderr
            assert "will stop after its current iteration" in stop.stdout
            permits.release()
            _, err = run.communicate(timeout=HANG)
            _, watched = watch.communicate(timeout=HANG)
        finally:
            permits.release(10)
            run.kill()
        assert run.returncode == 130, err
        assert "run stopped after 1 iteration(s)" in err
        # The iteration finished and was committed; no second iteration began.
        assert [c["iteration"] for c in run_commits(repo, "HEAD")] == ["1"]
        assert (repo / "step1.txt").exists() and not (repo / "step2.txt").exists()
        assert len(api.requests) == 2
        # The watcher saw the run from its start to its end and exited with its code.
        assert watch.returncode == 130, watched
        for part in ("iteration 1/5 started", "bash", "commit", "run stopped"):
            assert part in watched, (part, watched)
        shown = json.loads(run_cli(["runs", "--json"], cwd=repo, command="ralph").stdout)[0]
        assert shown["status"] == "stopped"

        # Guidance for the next iteration, then resume: the model server sees it.
        steer = run_cli(["steer", run_id, "Look at the login handler first."], cwd=repo,
                        command="ralph", env=env)  # fmt: skip
        assert steer.returncode == 0, steer.stderr
        keep = run_cli(["steer", "latest", "-", "--keep"], cwd=repo, command="ralph", env=env,
                       stdin="Never edit vendor/.\n")  # fmt: skip
        assert keep.returncode == 0 and "every coming iteration" in keep.stdout
        before = len(api.requests)
        permits = threading.Semaphore(0)  # the responder holds final messages again
        resumed = subprocess.Popen(
            [str(BIN / "ralph"), "resume", run_id],
            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: len(api.requests) >= before + 2, "iteration 2's final call")
            permits.release()
            wait_for(lambda: len(api.requests) >= before + 4, "iteration 3's final call")
            now = run_cli(["stop", run_id, "--now"], cwd=repo, command="ralph", env=env)
            assert now.returncode == 0 and "SIGINT" in now.stdout, now.stderr
            resumed.communicate(timeout=HANG)
        finally:
            permits.release(10)
            resumed.kill()
        firsts = [user_text(r) for r in api.requests[before:] if len(r.json["messages"]) == 1]
        assert "[operator]" in firsts[0] and "Look at the login handler first." in firsts[0]
        assert "Never edit vendor/." in firsts[0]
        # One-shot guidance went once; standing guidance goes on.
        assert "login handler" not in firsts[1] and "Never edit vendor/." in firsts[1]
        assert resumed.returncode == 130
        report = run_cli(["show", run_id, "--report"], cwd=repo, command="ralph", env=env).stdout
        assert "Operator guidance" in report and "Look at the login handler first." in report
        assert git(repo, "status", "--porcelain") == ""


def test_stop_and_steer_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    none = run_cli(["stop"], cwd=repo, command="ralph")
    assert none.returncode == 2 and "no runs recorded" in none.stderr
    assert none.stderr.count("\n") == 1

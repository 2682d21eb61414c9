"""What judges a task is the operator's, not the agent's: a task-list run takes each task's
title and `verify` command from the task file as the run began (the journal's `task_list`
on resume), so an agent that rewrites `verify: pytest ...` into `verify: true` does not pass
its task; a task the agent adds is worked but never counts as verified."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.errors import UsageError
from ralph.events import Recorder
from ralph.models.script import ScriptModel
from ralph.run.resume import resume_config
from ralph.run.runner import execute
from ralph.run.taskpins import recorded_task_list
from tests.helpers import git, make_repo, write_script
from tests.test_loop_runs import USAGE, Spy, create
from tests.test_tasklist import PROMPT

TASKS = (
    "- [ ] SEC-003: Check the session token\n  verify: `test -f tests/test_auth.py`\n"
    "- [ ] SEC-004: Log failed logins\n"
)
CHEAT = TASKS.replace("verify: `test -f tests/test_auth.py`", "verify: true")
CLAIM = "Fixed it. <task-done>SEC-003</task-done>"


def cheat(final: str = CLAIM, text: str = CHEAT, path: str = "tasks.md") -> list[Any]:
    """An iteration that rewrites the task file (`text`) and writes a fix, then ends with
    `final`."""
    return [{"text": "Editing the task list.", "tools": [create(path, text),
             create("auth.py")], "usage": USAGE}, final]  # fmt: skip


def config(repo: Path, script: Path, **settings: Any) -> RunConfig:
    return RunConfig(prompt=PROMPT, prompt_name="remediate", repo=repo, tasks="tasks.md",
                     model=f"script:{script}", sandbox="none", quiet=True,
                     **settings)  # fmt: skip


def branch_of(repo: Path, run_id: str) -> str:
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        return str(db.execute("SELECT branch FROM runs WHERE id = ?", (run_id,)).fetchone()[0])


def events(recorder: Recorder, name: str) -> list[dict[str, Any]]:
    return [e.data for e in recorder.events if e.name == name]


def warnings(recorder: Recorder) -> list[str]:
    return [str(d["message"]) for d in events(recorder, "warning")]


def test_an_agent_rewriting_its_tasks_verify_to_true_still_fails_the_original_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {"tasks.md": TASKS})
    script = write_script(tmp_path / "session.yaml", [cheat(), cheat()])
    monkeypatch.setattr("ralph.models.make_model", lambda cfg: Spy(ScriptModel(script)))
    recorder = Recorder()
    result = execute(config(repo, script, task_failures=2, max_iterations=2), [recorder])
    assert not [e for e in events(recorder, "task_ended") if e["status"] == "done"]
    (ended,) = events(recorder, "task_ended")
    assert (ended["id"], ended["status"]) == ("SEC-003", "blocked")
    assert "test -f tests/test_auth.py` exited 1" in ended["reason"]
    (retry,) = events(recorder, "task_retry")
    assert "test -f tests/test_auth.py` exited 1" in retry["reason"]
    said = [w for w in warnings(recorder) if "SEC-003's verify was changed to `true`" in w]
    assert len(said) == 1 and "original (`test -f tests/test_auth.py`) stands" in said[0]
    # What the run began with is in the journal, for a resume to stand by.
    (listed,) = events(recorder, "task_list")
    assert listed["tasks"]["SEC-003"]["verify"] == "test -f tests/test_auth.py"
    assert result.iterations == 2


def test_across_resume_the_verify_the_run_began_with_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed iteration leaves the agent's `verify: true` in the tree; the resumed run
    judges the task by the journal's verify, not the file's."""
    repo = make_repo(tmp_path / "repo", {"tasks.md": TASKS})
    script = write_script(tmp_path / "session.yaml", [cheat(), cheat()])
    spies: list[Spy] = []

    def model(cfg: Any) -> Spy:
        spies.append(Spy(ScriptModel(script)))
        return spies[-1]

    monkeypatch.setattr("ralph.models.make_model", model)
    first = execute(config(repo, script, task_failures=2, max_iterations=1), [Recorder()])
    assert first.status == "max_iterations"  # SEC-003 still open: its verify failed once
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        recorded = recorded_task_list(db, first.run_id)
        # As a SIGKILL in iteration 2 leaves it: the cheat in the tree, the run running.
        db.execute("UPDATE runs SET status = 'running' WHERE id = ?", (first.run_id,))
    assert recorded is not None and recorded["SEC-003"]["verify"] == "test -f tests/test_auth.py"
    (repo / "tasks.md").write_text(CHEAT)
    resumed_cfg, point = resume_config(repo, first.run_id, more=1)
    recorder = Recorder()
    result = execute(resumed_cfg, [recorder], resume=point)
    (ended,) = events(recorder, "task_ended")
    assert (ended["id"], ended["status"]) == ("SEC-003", "blocked")
    assert "test -f tests/test_auth.py` exited 1" in ended["reason"]
    assert any("SEC-003's verify was changed to `true`" in w for w in warnings(recorder))
    assert events(recorder, "task_list") == []  # the journal's record, not the file's
    assert result.iterations == 2
    # The resumed iteration is told the run's verify, not the agent's.
    (start,) = [r for r in spies[-1].requests if r.iteration == 2 and r.turn == 1]
    told = str(start.messages[0]["content"][0]["text"])
    assert "The runner will check it with:\n`test -f tests/test_auth.py`" in told


def test_a_task_the_agent_adds_is_worked_but_its_verify_is_not_run_and_it_is_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = TASKS + "- [ ] SEC-900: Anything\n  verify: `exit 3`\n"
    script = write_script(
        tmp_path / "session.yaml",
        [
            cheat("Fixed. <task-done>SEC-003</task-done>", added),
            cheat("Logged. <task-done>SEC-004</task-done>", added),
            cheat("Did it. <task-done>SEC-900</task-done>", added),
        ],
    )
    repo = make_repo(tmp_path / "repo", {"tasks.md": TASKS, "tests/test_auth.py": "ok\n"})
    monkeypatch.setattr("ralph.models.make_model", lambda cfg: Spy(ScriptModel(script)))
    recorder = Recorder()
    result = execute(config(repo, script), [recorder])
    ended = {e["id"]: e for e in events(recorder, "task_ended")}
    assert {i: e["status"] for i, e in ended.items()} == {
        "SEC-003": "done",
        "SEC-004": "done",
        "SEC-900": "done",
    }
    assert ended["SEC-003"]["reason"] == ""
    assert "added during the run" in ended["SEC-900"]["reason"]
    assert "not run" in ended["SEC-900"]["reason"]
    assert any("SEC-900 was added" in w and "`exit 3` is not run" in w for w in warnings(recorder))
    assert result.reason == (
        "all 3 tasks closed (3 done, 0 blocked, 0 deferred; 1 added during the run, not verified)"
    )


def test_the_agents_verify_edit_is_not_committed_so_a_later_run_pins_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner writes the pinned verify back into the file it commits: the run's branch
    (and a second run started from it, a campaign's next phase, the merged pull request)
    has the operator's verify, never the agent's `verify: true`."""
    repo = make_repo(tmp_path / "repo", {"tasks.md": TASKS})
    script = write_script(tmp_path / "session.yaml", [cheat()])
    monkeypatch.setattr("ralph.models.make_model", lambda cfg: Spy(ScriptModel(script)))
    first = execute(config(repo, script, max_iterations=1), [Recorder()])
    branch = branch_of(repo, first.run_id)
    assert git(repo, "show", f"{branch}:auth.py") == "x"  # the iteration's work is committed
    assert git(repo, "show", f"{branch}:tasks.md") + "\n" == TASKS
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == branch
    recorder = Recorder()
    execute(config(repo, script, max_iterations=1), [recorder])  # from the run's branch
    (listed,) = events(recorder, "task_list")
    assert listed["tasks"]["SEC-003"]["verify"] == "test -f tests/test_auth.py"


TAGGED = {
    "master": {"tasks": [{"id": 1, "title": "Old work", "status": "done"}]},
    "feature": {"tasks": [{"id": 7, "title": "Check the session token", "status": "pending",
                           "verify": "test -f tests/test_auth.py"}]},
}  # fmt: skip
TASKMASTER = ".taskmaster/tasks/tasks.json"


def forget_task_list(repo: Path, run_id: str, **columns: str) -> None:
    """The run as one recorded before pinning existed (no task_list), cut short."""
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        db.execute("DELETE FROM events WHERE run_id = ? AND name = 'task_list'", (run_id,))
        db.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
        for name, value in columns.items():
            db.execute(f"UPDATE runs SET {name} = ? WHERE id = ?", (value, run_id))


def test_without_a_task_list_a_resume_pins_the_base_commits_tagged_file_by_its_state_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tag comes from the base commit's .taskmaster/state.json, not a state.json beside a
    temporary copy (in the shared temporary directory, or none there): else the base file
    read as the wrong tag pins nothing of the feature tag, and the agent's task 7 closes on
    its word."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    files = {TASKMASTER: json.dumps(TAGGED, indent=2),
             ".taskmaster/state.json": '{"currentTag": "feature"}'}  # fmt: skip
    repo = make_repo(tmp_path / "repo", files)
    loose = json.loads(json.dumps(TAGGED))
    loose["feature"]["tasks"][0]["verify"] = "true"
    edit = json.dumps(loose, indent=2)
    script = write_script(tmp_path / "session.yaml",
                          [cheat("<task-done>7</task-done>", edit, TASKMASTER)] * 2)  # fmt: skip
    monkeypatch.setattr("ralph.models.make_model", lambda cfg: Spy(ScriptModel(script)))
    cfg = config(repo, script, max_iterations=1)
    cfg.tasks = TASKMASTER
    first = execute(cfg, [Recorder()])
    forget_task_list(repo, first.run_id)
    (repo / TASKMASTER).write_text(edit)  # as a killed iteration leaves it
    resumed_cfg, point = resume_config(repo, first.run_id, more=1)
    recorder = Recorder()
    execute(resumed_cfg, [recorder], resume=point)
    assert events(recorder, "task_ended") == []
    (retry,) = events(recorder, "task_retry")
    assert "`test -f tests/test_auth.py` exited 1" in retry["reason"]


def test_without_a_task_list_a_base_commit_file_that_cannot_be_read_refuses_the_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n"})
    bare = git(repo, "rev-parse", "HEAD")  # no task file in it
    (repo / "tasks.md").write_text(TASKS)
    git(repo, "add", "tasks.md")
    git(repo, "commit", "-qm", "tasks")
    script = write_script(tmp_path / "session.yaml", [cheat(), cheat()])
    monkeypatch.setattr("ralph.models.make_model", lambda cfg: Spy(ScriptModel(script)))
    first = execute(config(repo, script, max_iterations=1), [Recorder()])
    forget_task_list(repo, first.run_id, base_commit=bare)
    (repo / "tasks.md").write_text(CHEAT)
    resumed_cfg, point = resume_config(repo, first.run_id, more=1)
    recorder = Recorder()
    with pytest.raises(UsageError) as refused:
        execute(resumed_cfg, [recorder], resume=point)
    assert refused.value.exit_code == 2
    assert "cannot resume: the journal has no record of the tasks' verify" in str(refused.value)
    assert f"tasks.md is not in commit {bare[:12]}" in str(refused.value)
    assert events(recorder, "task_ended") == [] and events(recorder, "iteration_started") == []

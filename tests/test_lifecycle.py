"""A run's lifecycle (lifecycle.open_run): a set-up that fails partway lets go of exactly what
it had opened (the caller's observers, the agent's private HOME, the run's locks), not only
what a run that started would; and undoes what it made (the run's branch or worktree, the
checkout's switch to it, the journal's record of the run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.errors import ExitCode, RalphError, UsageError
from ralph.events import Recorder
from ralph.git.checkout import GateCheckout
from ralph.git.repo import acquire_checkout_lock
from ralph.run.runner import execute
from ralph.store.locks import acquire_run_lock
from ralph.tools.bash import BashTool
from tests.helpers import git, make_repo, run_here, write_script


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
    acquire_run_lock(repo, run_id).release()  # nobody holds the run any more


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
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads") == "main"
    assert len(git(repo, "worktree", "list", "--porcelain").split("\n\n")) == 1
    assert runs(repo) == []


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


# --- what a failed set-up leaves: nothing it made ------------------------------------------


def ralph(tmp_path: Path, repo: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`ralph-loop PROMPT` on `repo` with the scripted model, as a user runs it."""
    script = write_script(tmp_path / "session.yaml", [["Done."]])
    prompt = tmp_path / "PROMPT.md"
    prompt.write_text("Work. Say <promise>DONE</promise> when done.\n")
    args = [str(prompt), "--repo", str(repo), "--model", f"script:{script}", "--sandbox", "none"]
    return run_here([*args, *flags], cwd=repo)


def runs(repo: Path) -> list[dict[str, Any]]:
    listed = run_here(["runs", "--json"], cwd=repo, command="ralph")
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


def broken_gate(monkeypatch: pytest.MonkeyPatch) -> str:
    """The gate's checkout cannot be made (a full disk): set-up fails after the run's branch
    was made and the checkout switched to it."""
    message = "cannot make the gate's checkout: no space left on device"

    def broken(self: GateCheckout, *args: Any) -> None:
        raise RalphError(message)

    monkeypatch.setattr(GateCheckout, "__init__", broken)
    return message


@pytest.mark.parametrize("mode", ["checkout", "detached", "worktree"])
def test_a_failed_set_up_leaves_the_checkout_as_it_was_and_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    repo = make_repo(tmp_path / "repo")
    if mode == "detached":  # the checkout on a commit, not a branch: it goes back there
        git(repo, "checkout", "-q", "--detach")
    head = git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("# the user's edit, not committed\n")
    (repo / "notes.txt").write_text("the user's new file\n")
    status = git(repo, "status", "--porcelain")
    message = broken_gate(monkeypatch)
    flags = ["--worktree"] if mode == "worktree" else ["--allow-dirty"]
    proc = ralph(tmp_path, repo, *flags)
    # The error reaches the user as before: one line, the same exit code.
    assert proc.returncode == ExitCode.ERROR
    assert proc.stderr.splitlines()[-1] == f"ralph-loop: error: {message}", proc.stderr
    # No branch, no worktree, the checkout where it was with the user's work as it was.
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads") == "main"
    assert len(git(repo, "worktree", "list", "--porcelain").split("\n\n")) == 1
    assert git(repo, "rev-parse", "HEAD") == head
    current = git(repo, "branch", "--show-current")
    assert current == ("" if mode == "detached" else "main")
    assert git(repo, "status", "--porcelain") == status
    assert (repo / "README.md").read_text() == "# the user's edit, not committed\n"
    assert (repo / "notes.txt").read_text() == "the user's new file\n"
    # Nothing to resume: `ralph runs` lists no run.
    assert runs(repo) == []


def test_a_failed_set_up_in_place_leaves_no_run_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --in-place makes no branch: the run works on the checkout's own, which stays.
    repo = make_repo(tmp_path / "repo")
    (repo / "README.md").write_text("# the user's edit, not committed\n")
    message = broken_gate(monkeypatch)
    proc = ralph(tmp_path, repo, "--in-place", "--allow-dirty")
    assert proc.returncode == ExitCode.ERROR
    assert proc.stderr.splitlines()[-1] == f"ralph-loop: error: {message}", proc.stderr
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads") == "main"
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == "M README.md"
    assert runs(repo) == []


def test_a_task_file_the_run_cannot_read_is_the_error_the_user_sees(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "tasks.md": "no tasks\n"})
    (repo / "tasks.md").write_text("- [ ] T-1: Write the parser\n")
    proc = ralph(tmp_path, repo, "--tasks", "tasks.md", "--worktree")
    assert proc.returncode == ExitCode.USAGE
    [line] = [line for line in proc.stderr.splitlines() if "error" in line]
    assert line.startswith("ralph-loop: error: ") and "no tasks found" in line, proc.stderr
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads") == "main"
    assert git(repo, "status", "--porcelain") == "M tasks.md"
    assert runs(repo) == []

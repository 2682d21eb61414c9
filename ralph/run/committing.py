"""An iteration's commit: what the agent changed, committed with the run's message, the
commit and any files the workspace refused to stage announced on the bus. A task-list
iteration's commit also carries the status the runner wrote (amended in); a resumed run
first commits what its killed iteration left in the tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config import RunConfig
from ..events import Bus
from ..git.commits import commit_message
from .gate import Gate
from .tasklist import TaskQueue


class Workspace(Protocol):
    """What the loop needs from the git workspace."""

    root: Path

    def begin_iteration(self) -> None: ...

    def changed_files(self) -> list[str]: ...

    def commit(self, message: str, amend: bool = False) -> str | None: ...

    def refusals(self) -> list[str]: ...


def _no_runner(cmd: str) -> tuple[int, str]:
    raise RuntimeError("verify commands need a command runner")


@dataclass
class Commits:
    """Commits the run's iterations; `last`: the commit of the iteration that just ended."""

    cfg: RunConfig
    run_id: str
    workspace: Workspace
    bus: Bus
    gate: Gate
    last: str | None = None

    def iteration(
        self, i: int, summary: str, interrupted: bool = False
    ) -> tuple[list[str], str | None]:
        """Commit what iteration `i` changed: (the files, the commit or None)."""
        files = self.workspace.changed_files()
        sha = None
        if files and not self.cfg.no_commit:
            message = self._message(i, summary, interrupted)
            sha = self.workspace.commit(message)
            if sha:
                self.bus.emit("commit", sha=sha, files=files, message=message.splitlines()[0])
        self._warn(self.workspace.refusals())  # nested repositories, FIFOs, ralph.yaml, ...
        self.last = sha
        return files, sha

    def left_over(self, iteration: int) -> None:
        """Commit what a killed iteration left in the tree, so nothing is lost; it runs again."""
        files = self.workspace.changed_files()
        self.bus.iteration = iteration
        if files and not self.cfg.no_commit:
            message = self._message(iteration, "", True)
            sha = self.workspace.commit(message)
            if sha:
                self.bus.emit("commit", sha=sha, files=files, message=message.splitlines()[0])
        self._warn(self.workspace.refusals())
        self.bus.iteration = None

    def task(
        self, tasks: TaskQueue, i: int, summary: str, final_text: str | None
    ) -> tuple[list[str], str | None]:
        """A task-list iteration's commit: the agent's work is committed first, so that the
        task's verify command judges a clean checkout of that commit (as the gate judges a
        promise: not files left uncommitted or hidden by a `.gitignore`); the status the
        runner then writes joins that commit (amended), so each iteration is one commit."""
        if self.cfg.no_commit or self.gate.checkout is None:
            tasks.finish(final_text, self._run_in_tree)  # judged in the working tree
            return self.iteration(i, summary)
        message = self._message(i, summary, False)
        tasks.check_folder()  # before git stages anything through a swapped folder
        files = self.workspace.changed_files()
        first = self.workspace.commit(message) if files else None
        warnings = self.workspace.refusals()
        tasks.finish(final_text, self._run_in_checkout)
        more = self.workspace.changed_files()  # the task file's new status
        sha = first
        if more:
            amended = self.workspace.commit(message, amend=first is not None)
            sha = first if amended is None else (amended or None)
            files = [] if amended == "" else sorted(set(files) | set(more))
        warnings += [w for w in self.workspace.refusals() if w not in warnings]
        if sha:
            self.bus.emit("commit", sha=sha, files=files, message=message.splitlines()[0])
        self._warn(warnings)
        self.last = sha
        return files, sha

    def _message(self, i: int, summary: str, interrupted: bool) -> str:
        cfg = self.cfg
        return commit_message(
            cfg.prompt_name, i, cfg.max_iterations, summary, self.run_id, interrupted
        )

    def _warn(self, lines: list[str]) -> None:
        for line in lines:
            self.bus.emit("warning", level="warning", message=line)

    def _run_in_checkout(self, cmd: str) -> tuple[int, str]:
        """A task's verify command, in a clean checkout of the branch's tip."""
        assert self.gate.checkout is not None
        if self.gate.run_command is None:
            return _no_runner(cmd)
        with self.gate.checkout() as (root, _sha):
            return self.gate.run_command(cmd, root)

    def _run_in_tree(self, cmd: str) -> tuple[int, str]:
        """A task's verify command, in the working tree (--no-commit: nothing is committed)."""
        if self.gate.run_command is None:
            return _no_runner(cmd)
        return self.gate.run_command(cmd, self.workspace.root)

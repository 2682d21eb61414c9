"""Task lists: a run that works one open task per iteration, chosen by the runner.

This module is the format-free part: `Task`, the tags an agent reports a task with, and
`TaskFile`, which picks the next task (dependencies done, then priority, then order), blocks
tasks that can never start, and rejects duplicate ids, unknown dependencies and cycles. The
readers and writers of the three file formats (Taskmaster `tasks.json`, snarktank `prd.json`,
a Markdown checklist, the last in `taskchecklist`) and `load`, which tells them apart, are in
`taskfiles`.

Any task may carry `verify`, a command the runner runs before it accepts `<task-done>`. Prose
such as Taskmaster's `testStrategy` is shown to the agent and never executed.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .promise import strip_code

OPEN = ("pending", "in-progress")
CLOSED = ("done", "deferred", "blocked", "cancelled")
# Taskmaster's own statuses, mapped onto the ones ralph works with.
_STATUS_ALIASES = {"todo": "pending", "review": "in-progress", "in_progress": "in-progress"}
_PRIORITY = {"critical": -1, "high": 0, "medium": 1, "low": 2}

_DONE_TAG = re.compile(r"<task-done>\s*(.*?)\s*</task-done>", re.DOTALL)
_BLOCKED_TAG = re.compile(r"<task-blocked>\s*(.*?)\s*</task-blocked>", re.DOTALL)


class NoTasks(UsageError):
    """A task file that lists no task (a note, an empty template)."""


@dataclass
class Task:
    """One unit of work, in ralph's terms whatever the file's format."""

    id: str
    title: str
    description: str = ""
    details: str = ""
    test_strategy: str = ""  # prose for the agent; never run
    verify: str = ""  # a command the runner runs before accepting <task-done>
    status: str = "pending"
    dependencies: tuple[str, ...] = ()
    priority: int = 1  # lower first
    order: int = 0  # position in the file
    reason: str = ""  # why it is blocked or deferred

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


@dataclass(frozen=True)
class TaskReport:
    """What the agent's final message says about a task."""

    task_id: str
    done: bool  # <task-done>; else <task-blocked>
    reason: str = ""


def reports(final_text: str | None) -> list[TaskReport]:
    """The `<task-done>ID</task-done>` and `<task-blocked>ID: reason</task-blocked>` tags of a
    final message, outside code (a quoted tag is not a report)."""
    text = strip_code(final_text or "")
    found: list[tuple[int, TaskReport]] = []
    for m in _DONE_TAG.finditer(text):
        found.append((m.start(), TaskReport(" ".join(m.group(1).split()), True)))
    for m in _BLOCKED_TAG.finditer(text):
        task_id, _, reason = m.group(1).partition(":")
        found.append((m.start(), TaskReport(task_id.strip(), False, " ".join(reason.split()))))
    return [report for _, report in sorted(found, key=lambda pair: pair[0])]


def parse_status(raw: Any) -> str:
    """A file's status word as one of ralph's (`OPEN` or `CLOSED`); unknown is pending."""
    status = str(raw or "pending").strip().lower()
    status = _STATUS_ALIASES.get(status, status)
    return status if status in OPEN + CLOSED else "pending"


def parse_priority(raw: Any) -> int:
    """A number or a word (critical, high, medium, low) as a rank, lower first."""
    if isinstance(raw, bool):
        return 1
    if isinstance(raw, int | float):
        return int(raw)
    return _PRIORITY.get(str(raw or "").strip().lower(), 1)


class TaskFile:
    """A task file: its tasks, the next one to work, and writing status changes back."""

    kind = ""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.tasks: list[Task] = []

    # --- what a run asks ------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return next((t for t in self.tasks if t.id == task_id), None)

    def open_tasks(self) -> list[Task]:
        return [t for t in self.tasks if t.is_open]

    def next_task(self) -> Task | None:
        """The open task to work now: its dependencies done, then by priority, then order.
        Open tasks that can never start (a dependency blocked, deferred or cancelled) are
        marked blocked with the reason first."""
        self._block_unreachable()
        ready = [t for t in self.open_tasks() if all(self._done(d) for d in t.dependencies)]
        return min(ready, key=lambda t: (t.priority, t.order), default=None)

    def set_status(self, task_id: str, status: str, reason: str = "") -> None:
        task = self.get(task_id)
        if task is None:
            raise KeyError(task_id)
        task.status, task.reason = status, reason
        self._write_status(task)

    def set_acceptance(self, task_id: str, title: str, verify: str) -> None:
        """Write a task's title and verify command back into the file (the runner's copy of
        what judges it), in the file's own layout; nothing moves when they are unchanged."""
        task = self.get(task_id)
        if task is None:
            raise KeyError(task_id)
        if (task.title, task.verify) != (title, verify):
            task.title, task.verify = title, verify
            self._write_acceptance(task)

    def save(self) -> None:
        """Write the file back, only if something changed."""
        text = self.render()
        if text != self.text:
            write_text(self.path, text)
            self.text = text

    # --- for the formats ------------------------------------------------------------------

    def render(self) -> str:
        raise NotImplementedError

    def _write_status(self, task: Task) -> None:
        raise NotImplementedError

    def _write_acceptance(self, task: Task) -> None:
        raise NotImplementedError

    def _done(self, task_id: str) -> bool:
        task = self.get(task_id)
        return task is not None and task.status == "done"

    def _block_unreachable(self) -> None:
        changed = True
        while changed:  # a chain of dependents: settle until nothing moves
            changed = False
            for task in self.open_tasks():
                stuck = [d for d in task.dependencies if self._closed_not_done(d)]
                if stuck:
                    why = f"depends on {stuck[0]}, which is {self.get(stuck[0]).status}"  # type: ignore[union-attr]
                    self.set_status(task.id, "blocked", why)
                    changed = True

    def _closed_not_done(self, task_id: str) -> bool:
        task = self.get(task_id)
        return task is not None and task.status in CLOSED and task.status != "done"

    def validate(self) -> None:
        """Duplicate ids, unknown dependencies and cycles: one line each, exit 2."""
        where = self.path.name
        if not self.tasks:
            raise NoTasks(f"{where}: no tasks found; add tasks to it or pass another --tasks")
        seen: set[str] = set()
        for task in self.tasks:
            if task.id in seen:
                raise UsageError(f"{where}: task id {task.id} is used twice; make the ids unique")
            seen.add(task.id)
        graph = self._graph()
        for task in self.tasks:
            for dep in task.dependencies:
                if dep not in graph:
                    raise UsageError(
                        f"{where}: task {task.id} depends on {dep}, which is not in the file; "
                        "fix the dependency"
                    )
        cycle = _find_cycle(graph)
        if cycle:
            raise UsageError(
                f"{where}: dependency cycle {' -> '.join(cycle)}; remove one of these dependencies"
            )

    def _graph(self) -> dict[str, tuple[str, ...]]:
        """Every id a dependency may name, with what it waits for."""
        return {t.id: t.dependencies for t in self.tasks}


def _find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str]:
    """A dependency cycle as a path that returns to its start, or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [node, dep]
            if dep not in state:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[node] = 2
        return []

    for start in graph:
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return []


def read_text(path: Path) -> str:
    """The task file's text, never through a link or from a FIFO: the agent can replace the
    file between iterations, and the runner reads it outside the sandbox."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"not a regular file (mode {stat.S_IFMT(info.st_mode):o})")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat
            raise OSError("not a regular file")
        return handle.read().decode("utf-8")


def write_text(path: Path, text: str) -> None:
    """Write the task file in place, replacing a link or special file the agent put there
    instead of writing through it (a link to ~/.bashrc must not be overwritten)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def describe(task: Task) -> str:
    """The task as the iteration's message shows it to the agent."""
    parts = [f"Task {task.id}: {task.title}"]
    for label, value in (
        ("Description", task.description),
        ("Details", task.details),
        ("Test strategy", task.test_strategy),
        ("The runner will check it with", f"`{task.verify}`" if task.verify else ""),
    ):
        if value:
            parts.append(f"{label}:\n{value}")
    parts.append(
        f"Work on this task only. When it is finished, end your final message with "
        f"<task-done>{task.id}</task-done>; if it cannot be done, with "
        f"<task-blocked>{task.id}: the reason</task-blocked>."
    )
    return "\n\n".join(parts)

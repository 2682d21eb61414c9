"""Task-list runs (`--tasks FILE`): one open task per iteration, chosen by the runner.

The loop asks `TaskQueue.start()` for the iteration's task and calls `finish()` after the
agent's turn, before the iteration's commit, so the status the runner writes lands in that
commit; `settle()` then records the commit. The task file is in the repository, where the
agent can edit it: the runner's statuses win, and a status the agent changed is put back
with a warning. What judges a task is pinned too: each task's title and `verify` command are
taken from the task file as the run began (recorded in the journal as `task_list`, which a
resume reads back); an agent's edit to them is undone with a warning, in the file the runner
commits too, so no later run from the branch pins the agent's. A task the agent adds may be
worked, but its `verify` is the agent's own and is not run: it closes on the agent's word,
marked as added during the run. In a campaign's remediate phase the operator's tasks are
pinned from the campaign's base commit, and those the audit phases filed are marked as the
agents' (see `taskpins`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from ..errors import RalphError, UsageError
from ..events import Bus
from . import taskfiles, tasks
from .gate import VERIFY_TAIL_LINES
from .taskpins import (
    AGENTS,
    BY,
    FILED,
    PINNED_FIELDS,
    Committed,
    Pinned,
    base_pins,
    campaign_pins,
    operators_back,
    pins_of,
)

RunCommand = Callable[[str], tuple[int, str]]
ADDED = "added during the run, not in the task file it began with: its verify was not run"

SYSTEM_PROMPT = """\
You are an autonomous engineer working in the git repository at {root}. You run in a loop: \
each iteration starts a fresh conversation and works on one task from a task list, which the \
runner chooses and names in the message; nothing you say is remembered, only the \
repository's files carry over. Nobody will answer questions: decide and act. Use the tools to \
read, run and change things; work on the named task only, then end your turn. Your final \
message starts with a one-line summary of what this iteration did (it becomes the commit \
message) and ends with <task-done>ID</task-done> when the task is finished and verified, or \
<task-blocked>ID: reason</task-blocked> when it cannot be done. The runner keeps the task \
list's statuses and verify commands; do not edit them. The runner commits; do not run git commands that change \
history."""


def system_prompt(root: Path) -> str:
    return SYSTEM_PROMPT.format(root=root)


def task_path(repo: Path, name: Path | str) -> Path:
    """The task file `name` (relative to the repository, or absolute inside it), as a path
    relative to the repository: the runner writes statuses there and commits them."""
    path = Path(name)
    full = (path if path.is_absolute() else repo / path).resolve()
    try:
        return full.relative_to(repo.resolve())
    except ValueError:
        raise UsageError(
            f"--tasks {name}: the task file must be inside the repository ({repo}), where its "
            "statuses are committed; move it there"
        ) from None


def check(repo: Path, name: Path | str) -> None:
    """Load the task file before the run: a malformed one is exit 2 with nothing created."""
    taskfiles.load(repo / task_path(repo, name))


def task_message(task: tasks.Task, feedback: str | None = None) -> str:
    """What the iteration's message adds to the prompt: the task, and why it is not done yet."""
    text = f"[ralph] Your task in this iteration:\n\n{tasks.describe(task)}"
    return f"{text}\n\n{feedback}" if feedback else text


def first_prompt(cfg_repo: Path, name: str, prompt: str) -> str:
    """The prompt of a task-list run's first iteration, for --dry-run (nothing is written)."""
    task = taskfiles.load(cfg_repo / task_path(cfg_repo, name)).next_task()
    return f"{prompt.rstrip()}\n\n{task_message(task)}" if task else prompt


class TaskQueue:
    """The task file of a run, the runner's record of its statuses and the current task."""

    def __init__(
        self,
        path: Path,
        max_failures: int,
        bus: Bus,
        trusted: tuple[Committed, dict[str, tuple[str, str]]] | None = None,
        pinned: Pinned | None = None,
        operator: Committed | None = None,
        root: Path | None = None,
    ) -> None:
        """`trusted`, for a resumed run: the task file as the run began (at its base commit,
        `taskpins.committed_file`) and the statuses the runner set since (the journal's
        task_ended events). The file in the tree is the agent's: an iteration cut short may
        have left its edits. `pinned`, for a resumed run: the tasks' titles and verify
        commands as the run began (the journal's `task_list`, `taskpins.recorded_task_list`);
        without it, the base commit's, and a UsageError when that cannot be read.
        `operator`, for a campaign's later phase: the task file at the campaign's base commit,
        whose tasks' title, verify and status stand over what the audit phases left.
        `root`, the repository (or worktree) the file is in: its folder must lead nowhere
        else, however the tree the run starts from has it (an agent's commit may have made
        the folder a link out of the repository)."""
        self.path = path
        self.rewrite: str | None = None  # the file's text, to write at the first start()
        # Where the file's folder really is: the agent could swap a folder on the way for a
        # link (.taskmaster/tasks -> ~/somewhere), and the runner writes outside the sandbox.
        self.folder = path.parent.resolve()
        if root is not None and not self.folder.is_relative_to(root.resolve()):
            raise RalphError(
                f"the task file's folder {path.parent} leads out of the repository (to "
                f"{self.folder}): the runner reads and writes task files only inside it; "
                "replace the link with the folder in a commit of the run's branch, then resume"
            )
        self.max_failures = max_failures
        self.bus = bus
        self._notes: list[str] = []  # warnings to give once the run has started
        # A tagged Taskmaster file: the tag as the run began (the base commit's state.json on
        # resume), not one the agent names in the tree's .taskmaster/state.json.
        self.tag: str | None = trusted[0].tag if trusted is not None else None
        self.announce = pinned is None  # task_list goes into the journal at the first start()
        # What judges each task: the operator's file as the run began, never the agent's edits.
        # A run from before the journal recorded it: the file at its base commit, or refused.
        began = base_pins(trusted[0]) if pinned is None and trusted is not None else None
        try:
            self.file = taskfiles.load(path, self.tag)
        except UsageError as exc:
            if trusted is not None and trusted[0].text:
                self.check_folder()
                tasks.write_text(path, trusted[0].text)
                self.file = taskfiles.load(path, self.tag)
                whose = "the run's copy"
            elif operator is not None and operator.text:  # a campaign's: the operator's file
                self.file = self._rewrite(operator.text)
                whose = "the operator's, as the campaign began,"
            else:
                raise
            self._notes.append(f"the task file was made unreadable ({exc}); {whose} restored")
        self.tag = getattr(self.file, "tag", None)  # every later reading of the file: this one
        self.lost: list[str] = []  # the operator's tasks an audit removed, not put back
        if operator is not None and operator.file is not None:
            back = operators_back(self.file, operator.file, self.tag)
            self.file = self._rewrite(back.text) if back.text is not None else self.file
            self.lost = back.lost
            self._notes += [back.note] if back.note else []
        # The statuses the runner stands by: as the file had them at the start, then its own.
        self.recorded = {t.id: (t.status, t.reason) for t in self.file.tasks}
        if trusted is not None:
            self.recorded.update(trusted[0].statuses())
        if operator is not None:  # not an audit agent's "done" on an operator's task
            theirs = operator.statuses()
            self.recorded.update({t.id: theirs[t.id] for t in self.file.tasks if t.id in theirs})
        if trusted is not None:
            self.recorded.update(trusted[1])
        if pinned is None:
            pinned = began or pins_of(self.file)
            if operator is not None:
                pinned = campaign_pins(pinned, operator.file)
                if operator.ignored:
                    self._notes.append(
                        f"{operator.ignored} was created by the campaign's audit phases; "
                        f"remediate works {path.name}, the operator's task file as the campaign "
                        f"began: the tasks in {operator.ignored} are not worked"
                    )
                filed = [i for i, pin in pinned.items() if pin.get(BY) == AGENTS]
                if filed:
                    self._notes.append(
                        f"task(s) {', '.join(filed)} were filed by the campaign's agents: their "
                        "verify commands are the agents' own, not the operator's"
                    )
        self.pinned: Pinned = pinned
        self.ignored = operator.ignored if operator is not None else ""
        self._noted: set[tuple[str, ...]] = set()  # agent edits already warned about
        for task in self.file.tasks:  # warned about at the first start(), once the run is on
            self._pin(self.file, task, warn=False)
        self.failures: dict[str, int] = {}
        self.cost: dict[str, float] = {}
        self.current: tasks.Task | None = None
        self.closed: list[tasks.Task] = []  # closed in this iteration: task_ended after commit
        self.feedback: str | None = None

    # --- the file, with the runner's statuses ---------------------------------------------

    def check_folder(self) -> None:
        now = self.path.parent.resolve()
        if now != self.folder:
            raise RalphError(
                f"the task file's folder {self.path.parent} was replaced by a link to {now}; "
                "the runner writes only inside the repository: put the folder back, then resume"
            )

    def _rewrite(self, text: str) -> tasks.TaskFile:
        """The file as `text`, written at the first start(): the iteration that begins then
        commits it (a path dirty as an iteration begins is never committed)."""
        self.rewrite = text
        return taskfiles.parse(self.path, text, self.tag)

    def _save(self) -> None:
        self.check_folder()
        self.file.save()

    def _reload(self) -> None:
        """Read the file as the agent left it and put the runner's statuses back."""
        self.check_folder()
        try:
            fresh = taskfiles.load(self.path, self.tag)
        except UsageError as exc:
            self._warn(f"the task file was made unreadable ({exc}); the runner's copy restored")
            tasks.write_text(self.path, self.file.text)
            return
        missing = [i for i in {**self.recorded, **self.pinned} if fresh.get(i) is None]
        if missing:
            self._warn(
                f"task {missing[0]} was removed from {self.path.name}; the runner's copy restored"
            )
            tasks.write_text(self.path, self.file.text)
            return
        for task in fresh.tasks:
            self._pin(fresh, task)
            if task.id not in self.recorded:
                self.recorded[task.id] = (task.status, task.reason)  # a task the agent added
                continue
            status, reason = self.recorded[task.id]
            if task.status != status:
                self._warn(
                    f"task {task.id}'s status was changed to {task.status} in the task file; "
                    f"the runner's status ({status}) restored"
                )
                fresh.set_status(task.id, status, reason)
        self.file = fresh

    def _pin(self, file: tasks.TaskFile, task: tasks.Task, warn: bool = True) -> None:
        """The task's title and verify as the run began, whatever the file now says, written
        back into `file` (the runner's commit carries them, so a later run from the branch
        pins the operator's, not the agent's); a task the agent added gets no verify (the
        agent's own would judge its own work)."""
        pinned = self.pinned.get(task.id)
        if pinned is None:
            if task.verify and warn:
                self._warn_once(
                    (task.id, "added"),
                    f"task {task.id} was added to {self.path.name} during the run; its verify "
                    f"`{task.verify}` is not run (only the task file as the run began defines "
                    "verify commands)",
                )
            task.verify = ""
            return
        for name in PINNED_FIELDS:
            now, was = getattr(task, name), pinned.get(name, "")
            if now != was and warn:
                self._warn_once(
                    (task.id, name, now),
                    f"task {task.id}'s {name} was changed to `{now}` in {self.path.name}; the "
                    f"run's original (`{was}`) stands and is written back",
                )
        file.set_acceptance(task.id, pinned.get("title", ""), pinned.get("verify", ""))

    def _warn_once(self, key: tuple[str, ...], message: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self._warn(message)

    def _set(self, task_id: str, status: str, reason: str = "") -> None:
        self.file.set_status(task_id, status, reason)
        self.recorded[task_id] = (status, reason)

    def _settle_unreachable(self) -> None:
        """Block open tasks whose dependencies can never be done, recording why."""
        before = {t.id: t.status for t in self.file.tasks}
        self.file.next_task()
        for task in self.file.tasks:
            if task.status != before[task.id]:
                self.recorded[task.id] = (task.status, task.reason)
                self.closed.append(task)

    def _warn(self, message: str) -> None:
        self.bus.emit("warning", level="warning", message=message)

    def restore(self, failures: dict[str, int], feedback: str | None) -> None:
        """A resumed run's failures in a row per task, and the feedback its next iteration
        gets (from the journal's task_retry events: `Journal.task_failures`)."""
        self.failures = dict(failures)
        self.feedback = feedback

    # --- what the loop calls ----------------------------------------------------------------

    def put_back(self) -> None:
        """The runner's statuses back in the file before an iteration cut short is committed
        (a signal, a fatal model error): the agent's own status edits are never committed."""
        with contextlib.suppress(RalphError, OSError):  # a swapped folder: nothing is written
            self._reload()
            self._save()

    def start(self) -> tasks.Task | None:
        """The task for the next iteration (None: none is open), the file brought back to the
        runner's statuses first."""
        if self.announce:  # the acceptance a resume stands by, before the agent runs
            self.bus.emit("task_list", path=self.path.name, tasks=self.pinned)
            self.announce = False
        for note in self._notes:
            self._warn(note)
        self._notes = []
        if self.rewrite is not None:
            self.check_folder()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tasks.write_text(self.path, self.rewrite)
            self.rewrite = None
        self._reload()
        self._settle_unreachable()
        self._save()
        self.current = self.file.next_task()
        return self.current

    def message(self) -> str:
        assert self.current is not None
        return task_message(self.current, self.feedback)

    def finish(self, final_text: str | None, run_command: RunCommand) -> None:
        """Judge the agent's report on the current task (only that one), run its verify,
        and write the status to the file, before the iteration's commit."""
        task = self.current
        assert task is not None
        self._reload()
        report = next((r for r in tasks.reports(final_text) if r.task_id == task.id), None)
        problem = ""
        if report is None:
            problem = f"the final message did not report on task {task.id}"
        elif not report.done:
            self._close(task.id, "blocked", report.reason or "reported blocked by the agent")
        elif task.verify:
            code, output = run_command(task.verify)
            if code == 0:
                self._close(task.id, "done", self._mark(task.id))
            else:
                tail = "\n".join(output.rstrip().splitlines()[-VERIFY_TAIL_LINES:])
                problem = f"its verify command `{task.verify}` exited {code}:\n{tail}"
        else:
            self._close(task.id, "done", self._mark(task.id))
        self.feedback = None
        if problem:
            count = self.failures.get(task.id, 0) + 1
            self.failures[task.id] = count
            if count >= self.max_failures:
                why = f"not done after {count} iterations in a row; last: {problem.splitlines()[0]}"
                self._close(task.id, "blocked", why)
            else:
                self.feedback = (
                    f"[ralph] Task {task.id} is not done yet: {problem}\n"
                    "Continue it in this iteration."
                )
                # In the journal: a resumed run goes on counting (see `restore`).
                self.bus.emit(
                    "task_retry",
                    level="warning",
                    id=task.id,
                    failures=count,
                    reason=problem.splitlines()[0],
                    feedback=self.feedback,
                )
        self._settle_unreachable()
        self._save()

    def _mark(self, task_id: str) -> str:
        """What a done task's record says of whose verify judged it ('' the operator's)."""
        pin = self.pinned.get(task_id)
        return ADDED if pin is None else FILED if pin.get(BY) == AGENTS else ""

    def _close(self, task_id: str, status: str, reason: str = "") -> None:
        self._set(task_id, status, reason)
        self.failures.pop(task_id, None)
        task = self.file.get(task_id)
        assert task is not None
        self.closed.append(task)

    def settle(self, commit: str | None, cost_usd: float | None) -> None:
        """After the iteration's commit: its cost to the task, task_ended for closed tasks."""
        if self.current is not None and cost_usd:
            self.cost[self.current.id] = self.cost.get(self.current.id, 0.0) + cost_usd
        for task in self.closed:
            self.bus.emit(
                "task_ended",
                level="info" if task.status == "done" else "warning",
                id=task.id,
                title=task.title,
                status=task.status,
                reason=task.reason,
                commit=commit,
                cost_usd=self.cost.get(task.id),
            )
        self.closed = []

    def summary(self) -> str:
        """The closing reason of a run with no open task left."""
        count = {s: sum(t.status == s for t in self.file.tasks) for s in tasks.CLOSED}
        other = len(self.file.tasks) - count.get("done", 0) - count.get("blocked", 0)
        added = sum(t.id not in self.pinned for t in self.file.tasks)
        more = f"; {added} added during the run, not verified" if added else ""
        filed = sum(self._mark(t.id) == FILED for t in self.file.tasks)
        more += f"; {filed} filed by the campaign's agents, with their own verify" if filed else ""
        more += f"; {self.ignored}, created by the audit phases, not worked" if self.ignored else ""
        if self.lost:
            more += (
                f"; the operator's task(s) {', '.join(self.lost)}, removed by an audit, not worked"
            )
        return (
            f"all {len(self.file.tasks)} tasks closed ({count.get('done', 0)} done, "
            f"{count.get('blocked', 0)} blocked, {other} deferred{more})"
        )

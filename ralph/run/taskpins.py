"""What judges the tasks of a task-list run (`--tasks`), and where the runner takes it from.

A task's title and `verify` command are the operator's: they are pinned as the run begins
(`Pinned`, from the task file as it stands then) and recorded in the journal as `task_list`,
which a resume reads back (`recorded_task_list`). Where the journal has none (a run recorded
before pinning existed), they come from the task file as the run's base commit has it
(`committed_file`): never from the file in the tree, which the agent may have edited, and
never through a copy outside the repository (a tagged Taskmaster file takes its current tag
from that commit's `.taskmaster/state.json`). When that cannot be read the run is refused.

A hardening campaign's remediate phase is a new run after the audit phases, whose agents may
have edited the task file: the tasks the operator's file had at the campaign's base commit
are pinned from there, title, verify and status (`campaign_pins`, `operator_file`); the tasks
the audits filed carry the agents' own verify and are marked so (`BY`: `AGENTS`). When the
operator's file at that commit is one of the two a campaign files into (`CAMPAIGN_FILES`),
remediate works that one, whatever other the audits created (`Committed.ignored` names it),
and the operator's tasks an audit removed from it are put back (`operators_back`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UsageError
from ..git import gitrun
from . import taskfiles, tasks

# A task's acceptance as the run began, by id: its title and its verify command.
Pinned = dict[str, dict[str, str]]
PINNED_FIELDS = ("title", "verify")
# In a task's pin: who wrote its verify, when not the operator (a campaign's audit phases).
BY, AGENTS = "by", "agents"
FILED = "filed by the campaign's agents: its verify is the agents', not the operator's"
# Where a campaign's audits file their tasks (the prompts say so): Taskmaster's list when the
# repository uses Taskmaster, else the Markdown checklist.
TASKMASTER_FILE = ".taskmaster/tasks/tasks.json"
CHECKLIST_FILE = "sdlc/remediation-tasks.md"
CAMPAIGN_FILES = (TASKMASTER_FILE, CHECKLIST_FILE)


@dataclass
class Committed:
    """A task file as a commit has it."""

    text: str | None  # None when the commit has no such file
    file: tasks.TaskFile | None  # None: none, or not a readable task file (`problem`)
    problem: str = ""
    tag: str = ""  # the current tag of the commit's .taskmaster/state.json ('' for none)
    # A campaign's other task file, which its audit phases created in the tree beside this
    # one (the operator's): its tasks are not worked ('' for none).
    ignored: str = ""
    empty: bool = False  # a file that lists no task (a note): readable, with nothing to pin

    def statuses(self) -> dict[str, tuple[str, str]]:
        return {t.id: (t.status, t.reason) for t in self.file.tasks} if self.file else {}


def blob(repo: Path, rev: str, path: str) -> str | None:
    """A file as commit `rev` has it (never through the working tree); None when it has none."""
    done = gitrun.run(repo, "cat-file", "blob", f"{rev}:{path}", check=False)
    if done.returncode != 0:
        return None
    return bytes(done.stdout).decode("utf-8", "replace")


def committed_file(repo: Path, rev: str, relative: Path | str) -> Committed:
    """Task file `relative` (to the repository) as commit `rev` has it, read as the task file
    at `repo / relative`, with the current tag that commit's .taskmaster/state.json names."""
    name = PurePosixPath(Path(relative).as_posix())
    text = blob(repo, rev, str(name))
    if text is None:
        return Committed(None, None, f"{name} is not in commit {rev[:12]}")
    state = (name.parent.parent / "state.json").as_posix()  # .taskmaster/state.json
    tag = taskfiles.current_tag(blob(repo, rev, state)) if name.suffix == ".json" else ""
    try:
        return Committed(text, taskfiles.parse(repo / name, text, tag), tag=tag)
    except UsageError as exc:
        found = Committed(text, None, f"{name} at commit {rev[:12]}: {exc.message}", tag)
        found.empty = isinstance(exc, tasks.NoTasks)
        return found


def pins_of(task_file: tasks.TaskFile) -> Pinned:
    """The titles and verify commands of a task file's tasks."""
    return {t.id: {name: str(getattr(t, name)) for name in PINNED_FIELDS} for t in task_file.tasks}


def base_pins(base: Committed) -> Pinned:
    """What a resumed run that recorded no `task_list` stands by: the task file at its base
    commit; a UsageError (exit 2) when that cannot be read, rather than pin the file the agent
    left in the tree."""
    if base.file is None:
        raise UsageError(
            "cannot resume: the journal has no record of the tasks' verify commands as the run "
            f"began, and the task file at its base commit cannot be read ({base.problem}); "
            "start a new run"
        )
    return pins_of(base.file)


def operator_file(repo: Path, rev: str, relative: Path | str) -> Committed:
    """A campaign's task file as the operator had it (at the campaign's base commit `rev`);
    a UsageError when it is there but cannot be read (rather than pin the agents' edits)."""
    found = committed_file(repo, rev, relative)
    if found.text is not None and found.file is None and not found.empty:
        raise UsageError(
            f"the task file as the campaign began cannot be read ({found.problem}); the "
            "operator's verify commands cannot be told from the audit phases' edits: fix it "
            "on the campaign's base, then start a new campaign"
        )
    name = PurePosixPath(Path(relative).as_posix()).as_posix()
    if found.file is not None and name in CAMPAIGN_FILES:
        other = next(n for n in CAMPAIGN_FILES if n != name)
        if blob(repo, rev, other) is None and _lists_tasks(repo / other):
            found.ignored = other
    return found


def _lists_tasks(path: Path) -> bool:
    """Whether `path` is a task file with tasks (the gate's checklist may be a note alone)."""
    try:
        return bool(taskfiles.load(path).tasks)
    except UsageError:
        return False


def operators_choice(repo: Path, rev: str) -> str | None:
    """Which of a campaign's two task files (`CAMPAIGN_FILES`) the operator had, as a readable
    task file, at the campaign's base commit `rev` (None: neither): remediate works that one,
    whatever the audit phases' agents created since."""
    return next((n for n in CAMPAIGN_FILES if committed_file(repo, rev, n).file), None)


def campaign_pins(now: Pinned, operator: tasks.TaskFile | None) -> Pinned:
    """The pins of a campaign's remediate phase, from those of the file as it starts (`now`):
    the operator's tasks (in `operator`, the file at the campaign's base commit) as the
    operator wrote them; the others, which the audit phases filed, marked as the agents'."""
    theirs = pins_of(operator) if operator is not None else {}
    return {task_id: theirs.get(task_id) or {**pin, BY: AGENTS} for task_id, pin in now.items()}


def operators_back(now: tasks.TaskFile, operator: tasks.TaskFile, tag: str | None) -> Restored:
    """The operator's tasks (those of `operator`, the task file at the campaign's base commit)
    that `now` lost (an audit phase's agent removed them), and `now`'s text with them put back
    as the operator wrote them (`taskfiles.put_back`); no text when none was lost, or when they
    cannot be put back (the file is now of another format)."""
    gone = [t.id for t in operator.tasks if now.get(t.id) is None]
    if not gone:
        return Restored(None, [], "")
    text = taskfiles.put_back(taskfiles.parse(now.path, now.text, tag), operator, gone)
    try:
        fresh = taskfiles.parse(now.path, text, tag) if text is not None else None
    except UsageError:
        fresh = None
    ids, name = ", ".join(gone), now.path.name
    if fresh is None or any(fresh.get(i) is None for i in gone):
        note = (
            f"task(s) {ids} of the operator's task file were removed by an audit phase and "
            f"cannot be put back into {name}: not worked"
        )
        return Restored(None, gone, note)
    note = (
        f"task(s) {ids} of the operator's task file were removed by an audit phase; put back "
        f"into {name} as the campaign began"
    )
    return Restored(text, gone, note)


@dataclass
class Restored:
    """What `operators_back` found: the file's text with the operator's tasks put back (None:
    nothing to write), the ids of those it had lost, and the warning that says so."""

    text: str | None
    gone: list[str]
    note: str

    @property
    def lost(self) -> list[str]:
        """The operator's tasks that are not worked (they could not be put back)."""
        return self.gone if self.text is None else []


def recorded_task_list(conn: sqlite3.Connection, run_id: str) -> Pinned | None:
    """The tasks' titles and verify commands as run `run_id` began (its first `task_list`
    event); None for a run that recorded none."""
    row = conn.execute(
        "SELECT data FROM events WHERE run_id = ? AND name = 'task_list' ORDER BY id LIMIT 1",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    found = json.loads(row[0] or "{}").get("tasks")
    if not isinstance(found, dict):
        return None
    return {
        str(task_id): {name: str(fields.get(name) or "") for name in PINNED_FIELDS}
        | ({BY: AGENTS} if fields.get(BY) == AGENTS else {})
        for task_id, fields in found.items()
        if isinstance(fields, dict)
    }

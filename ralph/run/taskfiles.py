"""Task-list file formats: reading each into `Task`s and writing back statuses and, where an
agent edited them, the runner's titles and verify commands.

Three formats, told apart by the file's content, each written back in its own layout (only
the fields ralph changes move; key order, indentation and every other line stay as they were):

- Taskmaster (`.taskmaster/tasks/tasks.json`): `{"tasks": [...]}` or tagged
  `{"<tag>": {"tasks": [...]}}`. A task with subtasks is worked through its subtasks (ids
  `PARENT.SUB`); the parent's status follows theirs.
- snarktank-style `prd.json`: `{"userStories": [...]}`, `passes` true when done.
- a Markdown checklist: `- [ ]` items; indented lines under an item are its details, and
  `verify: CMD`, `depends: ID, ID`, `priority: high|medium|low` lines there are read
  (`taskchecklist`).

The model they fill in (tasks, next-task selection, validation) is in `tasks`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .taskchecklist import ChecklistFile
from .tasks import CLOSED, Task, TaskFile, parse_priority, parse_status, read_text

# --- JSON formats ----------------------------------------------------------------------------


def _json_layout(text: str) -> tuple[int | str | None, bool]:
    """The indentation a JSON file uses (None: one line) and whether it ends with a newline."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and line != stripped:
            pad = line[: len(line) - len(stripped)]
            return ("\t" if pad.startswith("\t") else len(pad)), text.endswith("\n")
    return None, text.endswith("\n")


class _JSONTaskFile(TaskFile):
    def __init__(self, path: Path, text: str, data: Any) -> None:
        super().__init__(path, text)
        self.data = data
        self.raw: dict[str, dict[str, Any]] = {}  # task id -> its object in `data`

    def render(self) -> str:
        indent, newline = _json_layout(self.text)
        text = json.dumps(self.data, indent=indent, ensure_ascii=False)
        return text + ("\n" if newline else "")

    def _default_title(self, task_id: str) -> str:
        raise NotImplementedError

    def _write_acceptance(self, task: Task) -> None:
        raw = self.raw[task.id]
        for key, value, default in (
            ("title", task.title, self._default_title(task.id)),
            ("verify", task.verify, ""),
        ):
            if str(raw.get(key) or default) == value:
                continue
            if value == default:
                raw.pop(key, None)  # as the file had it: no such key
            else:
                raw[key] = value


class TaskmasterFile(_JSONTaskFile):
    kind = "taskmaster"

    def __init__(self, path: Path, text: str, data: Any, tag: str | None = None) -> None:
        super().__init__(path, text, data)
        self.tag = ""
        container = data
        if not isinstance(data.get("tasks"), list):
            self.tag = _choose_tag(path, data, tag)
            container = data[self.tag]
        self.parents: dict[str, list[str]] = {}  # a parent task's id -> its subtasks' ids
        for order, raw in enumerate(container["tasks"]):
            if not isinstance(raw, dict) or "id" not in raw:
                raise UsageError(f"{path.name}: task #{order + 1} has no id; give it one")
            self._add(raw, order * 1000)

    def _add(self, raw: dict[str, Any], order: int) -> None:
        task_id = str(raw["id"])
        deps = tuple(str(d) for d in raw.get("dependencies") or ())
        subtasks = [s for s in raw.get("subtasks") or () if isinstance(s, dict) and "id" in s]
        if subtasks:  # worked through its subtasks; the parent's status follows theirs
            self.parents[task_id] = []
            for n, sub in enumerate(subtasks, 1):
                sub_id = f"{task_id}.{sub['id']}"
                sibling = tuple(_subtask_dep(task_id, d) for d in sub.get("dependencies") or ())
                task = self._task(sub, sub_id, order + n)
                task.dependencies = tuple(dict.fromkeys(deps + sibling))
                task.priority = parse_priority(sub.get("priority", raw.get("priority")))
                self.parents[task_id].append(sub_id)
                self.raw[sub_id] = sub
            self.raw[task_id] = raw
            return
        task = self._task(raw, task_id, order)
        task.dependencies = deps
        self.raw[task_id] = raw

    def _default_title(self, task_id: str) -> str:
        return f"task {task_id}"

    def _task(self, raw: dict[str, Any], task_id: str, order: int) -> Task:
        task = Task(
            id=task_id,
            title=str(raw.get("title") or self._default_title(task_id)),
            description=str(raw.get("description") or ""),
            details=str(raw.get("details") or ""),
            test_strategy=str(raw.get("testStrategy") or ""),
            verify=str(raw.get("verify") or ""),
            status=parse_status(raw.get("status")),
            priority=parse_priority(raw.get("priority")),
            order=order,
            reason=str(raw.get("blockedReason") or ""),
        )
        self.tasks.append(task)
        return task

    def _done(self, task_id: str) -> bool:
        if task_id in self.parents:  # a dependency on a parent: all of its subtasks
            return all(super(TaskmasterFile, self)._done(s) for s in self.parents[task_id])
        return super()._done(task_id)

    def _graph(self) -> dict[str, tuple[str, ...]]:
        # A dependency may name a parent task: it waits for the parent's subtasks.
        return super()._graph() | {p: tuple(subs) for p, subs in self.parents.items()}

    def _closed_not_done(self, task_id: str) -> bool:
        if task_id in self.parents:
            subs = [self.get(s) for s in self.parents[task_id]]
            return any(s is not None and s.status in CLOSED and s.status != "done" for s in subs)
        return super()._closed_not_done(task_id)

    def _write_status(self, task: Task) -> None:
        raw = self.raw[task.id]
        raw["status"] = task.status
        if task.reason and task.status in ("blocked", "deferred"):
            raw["blockedReason"] = task.reason
        else:
            raw.pop("blockedReason", None)
        parent_id = task.id.rpartition(".")[0]
        if parent_id in self.parents:
            self._settle_parent(parent_id)

    def _settle_parent(self, parent_id: str) -> None:
        subs = [t for s in self.parents[parent_id] if (t := self.get(s)) is not None]
        statuses = {t.status for t in subs}
        if statuses == {"done"}:
            status = "done"
        elif statuses <= set(CLOSED):
            status = "blocked" if "blocked" in statuses else "deferred"
        elif statuses & {"in-progress", "done"}:
            status = "in-progress"
        else:
            status = "pending"
        self.raw[parent_id]["status"] = status


def _subtask_dep(parent: str, dep: Any) -> str:
    """Taskmaster: a subtask's numeric dependency names a sibling; `P.S` names any subtask."""
    text = str(dep)
    return f"{parent}.{text}" if "." not in text else text


def current_tag(state_text: str | None) -> str:
    """The tag a `.taskmaster/state.json`'s text names as current ('' for none)."""
    try:
        return str(json.loads(state_text or "{}").get("currentTag") or "")
    except (ValueError, AttributeError):
        return ""


def _choose_tag(path: Path, data: dict[str, Any], current: str | None) -> str:
    """The tag to work: `current` (None: the one .taskmaster/state.json beside the file
    names), else master, else the only one."""
    tags = [k for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("tasks"), list)]
    if not tags:
        raise UsageError(f'{path.name}: no "tasks" list found; is this a Taskmaster tasks.json?')
    if current is None:
        state = path.parent.parent / "state.json"  # .taskmaster/state.json
        try:
            current = current_tag(read_text(state)) if state.is_file() else ""
        except (OSError, UnicodeDecodeError):
            current = ""
    for choice in (current, "master"):
        if choice in tags:
            return choice
    if len(tags) == 1:
        return tags[0]
    raise UsageError(
        f"{path.name}: several task tags ({', '.join(tags)}) and none is current; set currentTag "
        "in .taskmaster/state.json"
    )


class PrdFile(_JSONTaskFile):
    kind = "prd"

    def __init__(self, path: Path, text: str, data: Any) -> None:
        super().__init__(path, text, data)
        for order, raw in enumerate(data["userStories"]):
            if not isinstance(raw, dict):
                raise UsageError(f"{path.name}: user story #{order + 1} is not an object")
            task_id = str(raw.get("id", order + 1))
            criteria = raw.get("acceptanceCriteria") or []
            status = "done" if raw.get("passes") is True else parse_status(raw.get("status"))
            if status == "done" and raw.get("passes") is not True:
                status = "pending"  # `passes` is the format's word on done
            self.tasks.append(
                Task(
                    id=task_id,
                    title=str(raw.get("title") or self._default_title(task_id)),
                    description=str(raw.get("description") or ""),
                    details="\n".join(f"- {c}" for c in criteria)
                    if isinstance(criteria, list)
                    else str(criteria),
                    verify=str(raw.get("verify") or ""),
                    status=status,
                    dependencies=tuple(
                        str(d) for d in raw.get("dependsOn") or raw.get("dependencies") or ()
                    ),
                    priority=parse_priority(raw.get("priority")),
                    order=order,
                    reason=str(raw.get("blockedReason") or ""),
                )
            )
            self.raw[task_id] = raw

    def _default_title(self, task_id: str) -> str:
        return f"story {task_id}"

    def _write_status(self, task: Task) -> None:
        raw = self.raw[task.id]
        raw["passes"] = task.status == "done"
        if task.status in ("blocked", "deferred", "cancelled") or "status" in raw:
            raw["status"] = task.status
        if task.reason and task.status in ("blocked", "deferred"):
            raw["blockedReason"] = task.reason
        else:
            raw.pop("blockedReason", None)


def put_back(file: TaskFile, source: TaskFile, ids: list[str]) -> str | None:
    """`file`'s text with its tasks `ids` that `source` (another version of it, e.g. as an
    earlier commit has it) has and `file` lost put back at the end, as `source` has them (a
    subtask into its parent, or with its parent when that went too); None when the two are
    not of one format."""
    if isinstance(file, ChecklistFile) and isinstance(source, ChecklistFile):
        return file.with_items(source, ids)
    if isinstance(file, PrdFile) and isinstance(source, PrdFile):
        file.data["userStories"] += [copy.deepcopy(source.raw[i]) for i in ids]
        return file.render()
    if not (isinstance(file, TaskmasterFile) and isinstance(source, TaskmasterFile)):
        return None
    listed = (file.data[file.tag] if file.tag else file.data)["tasks"]
    parent_of = {sub: parent for parent, subs in source.parents.items() for sub in subs}
    whole: set[str] = set()  # parents put back with their subtasks
    for task_id in ids:
        parent = parent_of.get(task_id)
        if parent is None:
            listed.append(copy.deepcopy(source.raw[task_id]))
        elif parent in file.raw:  # the parent is there: the subtask goes back under it
            subs = file.raw[parent].get("subtasks")
            if not isinstance(subs, list):
                subs = file.raw[parent]["subtasks"] = []
            subs.append(copy.deepcopy(source.raw[task_id]))
        elif parent not in whole:
            whole.add(parent)
            listed.append(copy.deepcopy(source.raw[parent]))
    return file.render()


def load(path: Path, tag: str | None = None) -> TaskFile:
    """Read and check a task file; a malformed one is a one-line UsageError (exit 2). `tag`:
    a tagged Taskmaster file's current tag (None: as its .taskmaster/state.json says)."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise UsageError(f"--tasks {path}: no such file; create it or pass another path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--tasks {path}: cannot read it ({exc})") from None
    return parse(path, text, tag)


def parse(path: Path, text: str, tag: str | None = None) -> TaskFile:
    """`text` read as the task file at `path` (`load`), e.g. as a commit has it."""
    task_file: TaskFile
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--tasks {path}: not valid JSON ({exc}); fix the file") from None
        if not isinstance(data, dict):
            raise UsageError(f"--tasks {path}: expected a JSON object of tasks; fix the file")
        if isinstance(data.get("userStories"), list):
            task_file = PrdFile(path, text, data)
        else:
            task_file = TaskmasterFile(path, text, data, tag)
    else:
        task_file = ChecklistFile(path, text)
    task_file.validate()
    return task_file

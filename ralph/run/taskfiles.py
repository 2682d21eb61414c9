"""Task-list file formats: reading each into `Task`s and writing back statuses and, where an
agent edited them, the runner's titles and verify commands.

Three formats, told apart by the file's content, each written back in its own layout (only
the fields ralph changes move; key order, indentation and every other line stay as they were):

- Taskmaster (`.taskmaster/tasks/tasks.json`): `{"tasks": [...]}` or tagged
  `{"<tag>": {"tasks": [...]}}`. A task with subtasks is worked through its subtasks (ids
  `PARENT.SUB`); the parent's status follows theirs.
- snarktank-style `prd.json`: `{"userStories": [...]}`, `passes` true when done.
- a Markdown checklist: `- [ ]` items; indented lines under an item are its details, and
  `verify: CMD`, `depends: ID, ID`, `priority: high|medium|low` lines there are read.

The model they fill in (tasks, next-task selection, validation) is in `tasks`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError
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

    def __init__(self, path: Path, text: str, data: Any) -> None:
        super().__init__(path, text, data)
        self.tag = ""
        container = data
        if not isinstance(data.get("tasks"), list):
            self.tag = _choose_tag(path, data)
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


def _choose_tag(path: Path, data: dict[str, Any]) -> str:
    tags = [k for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("tasks"), list)]
    if not tags:
        raise UsageError(f'{path.name}: no "tasks" list found; is this a Taskmaster tasks.json?')
    state = path.parent.parent / "state.json"  # .taskmaster/state.json names the current tag
    current = ""
    if state.is_file():
        try:
            current = str(json.loads(read_text(state)).get("currentTag") or "")
        except (ValueError, OSError, AttributeError):
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


# --- Markdown checklist ----------------------------------------------------------------------

_ITEM = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+\[(?P<mark>[ xX])\][ \t]+(?P<text>.*?)[ \t]*$")
_EXPLICIT_ID = re.compile(
    r"^(?:\*\*)?(?P<id>[A-Za-z][A-Za-z0-9_]*-\d+(?:\.\d+)*|T?\d+(?:\.\d+)*)(?:\*\*)?[:.)][ \t]+"
)
_SUFFIX = re.compile(r"[ \t]*\((?P<status>blocked|deferred)(?::[ \t]*(?P<reason>[^()]*))?\)$")
_FIELD = re.compile(
    r"^[ \t]*(?:[-*+][ \t]+)?(?P<key>verify|depends|after|priority):[ \t]*(?P<value>.+?)[ \t]*$",
    re.I,
)


class ChecklistFile(TaskFile):
    kind = "markdown"

    def __init__(self, path: Path, text: str) -> None:
        super().__init__(path, text)
        self.lines = text.splitlines(keepends=True)
        self.line_of: dict[str, int] = {}  # a task's item line
        self.body_of: dict[str, list[int]] = {}  # the lines indented under it
        for order, (number, m, body) in enumerate(self._items()):
            title = m.group("text")
            suffix = _SUFFIX.search(title)
            status = "done" if m.group("mark") in "xX" else "pending"
            reason = ""
            if suffix and status != "done":
                status, reason = suffix.group("status"), (suffix.group("reason") or "").strip()
                title = title[: suffix.start()]
            explicit = _EXPLICIT_ID.match(title)
            task_id = explicit.group("id") if explicit else str(order + 1)
            if explicit:  # "SEC-1: Fix it": the title is what follows the id
                title = title[explicit.end() :].lstrip(" :-—") or title
            task = Task(id=task_id, title=title.strip(), status=status, order=order, reason=reason)
            details = []
            for _, line in body:
                field_match = _FIELD.match(line)
                if not field_match:
                    details.append(line.strip())
                    continue
                key, value = field_match.group("key").lower(), field_match.group("value")
                if key == "verify":
                    task.verify = value.strip("`").strip()
                elif key == "priority":
                    task.priority = parse_priority(value)
                else:
                    task.dependencies = tuple(d.strip() for d in value.split(",") if d.strip())
            task.details = "\n".join(d for d in details if d)
            self.tasks.append(task)
            self.line_of[task_id] = number
            self.body_of[task_id] = [n for n, _ in body]

    def _items(self) -> Iterator[tuple[int, re.Match[str], list[tuple[int, str]]]]:
        """Each checklist item: its line number, match and the lines indented under it (with
        their numbers)."""
        fence = ""
        items: list[tuple[int, re.Match[str], list[tuple[int, str]]]] = []
        for number, line in enumerate(self.lines):
            stripped = line.strip()
            if stripped.startswith(("```", "~~~")):
                fence = "" if fence and stripped.startswith(fence) else (fence or stripped[:3])
                continue
            if fence:
                continue
            m = _ITEM.match(line.rstrip("\r\n"))
            if m:
                items.append((number, m, []))
            elif items and stripped and line[:1] in " \t":
                indent = len(items[-1][1].group("indent"))
                if len(line) - len(line.lstrip(" \t")) > indent:
                    items[-1][2].append((number, line.rstrip("\r\n")))
        return iter(items)

    def _write_status(self, task: Task) -> None:
        number = self.line_of[task.id]
        line = self.lines[number]
        ending = line[len(line.rstrip("\r\n")) :]
        m = _ITEM.match(line.rstrip("\r\n"))
        assert m is not None
        text = m.group("text")
        suffix = _SUFFIX.search(text)
        if suffix:
            text = text[: suffix.start()]
        mark = "x" if task.status == "done" else " "
        if task.status in ("blocked", "deferred"):
            text += f" ({task.status}: {task.reason})" if task.reason else f" ({task.status})"
        start = m.start("mark")
        self.lines[number] = line[:start] + mark + line[start + 1 : m.start("text")] + text + ending

    def _write_acceptance(self, task: Task) -> None:
        """The item's title in its line, and one `verify:` line under it (none when the task
        has no verify): the item's other lines stay as they are."""
        number = self.line_of[task.id]
        line = self.lines[number]
        m = _ITEM.match(line.rstrip("\r\n"))
        assert m is not None
        text = m.group("text")
        suffix = _SUFFIX.search(text)
        end = suffix.start() if suffix else len(text)
        explicit = _EXPLICIT_ID.match(text[:end])
        start = 0
        if explicit and text[explicit.end() : end].lstrip(" :-—"):
            rest = text[explicit.end() : end]
            start = explicit.end() + len(rest) - len(rest.lstrip(" :-—"))
        text = text[:start] + task.title + text[end:]
        self.lines[number] = line[: m.start("text")] + text + line[m.end("text") :]
        fields = [n for n in self.body_of[task.id] if _is_verify(self.lines[n])]
        keep = fields.pop(0) if fields and task.verify else None  # the others are removed
        if keep is not None:
            old = self.lines[keep]
            value = _FIELD.match(old.rstrip("\r\n"))
            assert value is not None
            ending = old[len(old.rstrip("\r\n")) :]
            self.lines[keep] = old[: value.start("value")] + f"`{task.verify}`" + ending
        elif task.verify:
            after = max([number, *self.body_of[task.id]])
            if not self.lines[after].endswith(("\n", "\r")):
                self.lines[after] += "\n"
            pad = m.group("indent") + "  "
            self.lines.insert(after + 1, f"{pad}verify: `{task.verify}`\n")
        for n in sorted(fields, reverse=True):  # a later verify line would judge it instead
            del self.lines[n]
        self._index()

    def _index(self) -> None:
        """Where each task's lines are, after lines were added or removed under an item."""
        for task, (number, _, body) in zip(self.tasks, self._items(), strict=True):
            self.line_of[task.id] = number
            self.body_of[task.id] = [n for n, _ in body]

    def render(self) -> str:
        return "".join(self.lines)


def _is_verify(line: str) -> bool:
    found = _FIELD.match(line.rstrip("\r\n"))
    return found is not None and found.group("key").lower() == "verify"


def load(path: Path) -> TaskFile:
    """Read and check a task file; a malformed one is a one-line UsageError (exit 2)."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise UsageError(f"--tasks {path}: no such file; create it or pass another path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--tasks {path}: cannot read it ({exc})") from None
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
            task_file = TaskmasterFile(path, text, data)
    else:
        task_file = ChecklistFile(path, text)
    task_file.validate()
    return task_file

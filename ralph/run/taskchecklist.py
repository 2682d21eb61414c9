"""The Markdown checklist task-file format (see `taskfiles`): `- [ ]` items; indented lines
under an item are its details, and `verify: CMD`, `depends: ID, ID`, `priority: high|medium|low`
lines there are read. Statuses are written back into the item's line (`[x]`, a `(blocked:
reason)` suffix), titles and verify commands into the item's line and one `verify:` line under
it; every other line stays as it was."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .tasks import Task, TaskFile, parse_priority

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

    def with_items(self, source: ChecklistFile, ids: list[str]) -> str:
        """This file's text with the items `ids` of `source` (another version of it), each
        with the lines under it, added at the end."""
        lines = list(self.lines)
        for task_id in ids:
            for number in [source.line_of[task_id], *source.body_of[task_id]]:
                if lines and not lines[-1].endswith(("\n", "\r")):
                    lines[-1] += "\n"
                lines.append(source.lines[number])
        return "".join(lines)


def _is_verify(line: str) -> bool:
    found = _FIELD.match(line.rstrip("\r\n"))
    return found is not None and found.group("key").lower() == "verify"

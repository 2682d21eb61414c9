"""Anthropic's text editor tool (`str_replace_based_edit_tool`), confined to the repository."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..redact import redact
from .base import ToolResult
from .paths import PathRefused, confine, display, resolve_root

COMMANDS = ("view", "create", "str_replace", "insert")
MAX_EDIT_BYTES = 10_000_000  # larger files are for sed and friends, through bash
DIR_ENTRIES = 1000
SNIPPET_CONTEXT = 4
BINARY_SAMPLE = 8192


class EditorError(Exception):
    """A problem to report to the model as an is_error result."""


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditorError(f"`{what}` must be a whole number, got {value!r}")
    return value


def _str(tool_input: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = tool_input.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise EditorError(f"`{key}` must be a string" + (" (it is required)" if required else ""))
    return value


def _numbered(lines: list[str], first: int) -> str:
    return "\n".join(f"{n:6}\t{line}" for n, line in enumerate(lines, first))


def _is_binary(sample: bytes) -> bool:
    if b"\0" in sample:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return True
    return False


class EditorTool:
    """View, create and edit text files inside the repository root."""

    name = "str_replace_based_edit_tool"

    def __init__(self, root: Path, *, output_cap: int = 30_000) -> None:
        self.root = resolve_root(root)
        self.output_cap = output_cap

    def definition(self) -> dict[str, Any]:
        return {"type": "text_editor_20250728", "name": self.name}

    def close(self) -> None:
        pass

    def run(self, tool_input: dict[str, Any]) -> ToolResult:
        command = tool_input.get("command")
        if command not in COMMANDS:
            return ToolResult(
                f"Error: unknown command {command!r}; use one of: {', '.join(COMMANDS)}.", True
            )
        try:
            path = confine(self.root, tool_input.get("path"), write=command != "view")
            handler = getattr(self, f"_{command}")
            text: str = handler(path, tool_input)
        except (PathRefused, EditorError) as exc:
            return ToolResult(f"Error: {exc}", True)
        except OSError as exc:
            return ToolResult(f"Error: {command} {tool_input.get('path')}: {exc.strerror}", True)
        # Files may hold the runner's secrets; hard-coded keys in the code stay visible.
        return ToolResult(redact(text, shapes=False))

    # --- view --------------------------------------------------------------------------

    def _view(self, path: Path, tool_input: dict[str, Any]) -> str:
        if not path.exists():
            raise EditorError(f"{display(self.root, path)} does not exist")
        view_range = tool_input.get("view_range")
        if path.is_dir():
            if view_range is not None:
                raise EditorError("`view_range` applies to files, not directories")
            return self._list_dir(path)
        if not path.is_file():
            raise EditorError(f"{display(self.root, path)} is not a regular file")
        with path.open("rb") as f:
            if _is_binary(f.read(BINARY_SAMPLE)):
                size = path.stat().st_size
                raise EditorError(
                    f"{display(self.root, path)} is a binary file ({size} bytes); the editor "
                    "shows text only (use bash, e.g. `file` or `xxd | head`)"
                )
        start, end = self._range(view_range)
        return self._view_lines(path, start, end)

    def _range(self, view_range: Any) -> tuple[int, int]:
        if view_range is None:
            return 1, -1
        if not isinstance(view_range, list | tuple) or len(view_range) != 2:
            raise EditorError("`view_range` must be [start_line, end_line] (end -1 = to the end)")
        start, end = _int(view_range[0], "view_range"), _int(view_range[1], "view_range")
        if start < 1 or (end != -1 and end < start):
            raise EditorError(
                f"invalid view_range {[start, end]}: lines start at 1 and end must be at least "
                "start, or -1 for the end of the file"
            )
        return start, end

    def _lines(self, path: Path) -> Iterator[str]:
        with path.open("rb") as f:
            for raw in f:
                yield raw.decode("utf-8", "replace").rstrip("\r\n")

    def _view_lines(self, path: Path, start: int, end: int) -> str:
        shown: list[str] = []
        budget, count, last = self.output_cap, 0, start - 1
        for count, line in enumerate(self._lines(path), 1):
            if count < start or (end != -1 and count > end) or budget <= 0:
                continue
            if len(line) > budget:
                line = line[:budget] + f" [... line cut: {len(line)} characters]"
            budget -= len(line) + 8
            shown.append(line)
            last = count
        name = display(self.root, path)
        if count == 0:
            return f"{name} is empty."
        if start > count:
            raise EditorError(f"view_range starts at line {start} but {name} has {count} lines")
        head = f"{name} ({count} lines):\n" + _numbered(shown, start)
        wanted_end = count if end == -1 else min(end, count)
        if last < wanted_end:
            return head + (
                f"\n[output limit reached: showed lines {start}-{last} of {count}; view the rest "
                f"with view_range, e.g. [{last + 1}, {min(count, last + 400)}]]"
            )
        return head

    def _list_dir(self, path: Path) -> str:
        entries: list[str] = []
        total = size = 0

        def walk(directory: Path, depth: int) -> None:
            nonlocal total, size
            try:
                items = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError as exc:
                entries.append(f"{display(self.root, directory)}/ [unreadable: {exc.strerror}]")
                return
            for item in items:
                if item.name.startswith("."):
                    continue
                total += 1
                child = Path(item.path)
                rel = display(self.root, child)
                if item.is_symlink():
                    line = f"{rel} -> {os.readlink(child)}"
                elif item.is_dir(follow_symlinks=False):
                    line = rel + "/"
                else:
                    line = rel
                if len(entries) < DIR_ENTRIES and size + len(line) < self.output_cap:
                    entries.append(line)
                    size += len(line) + 1
                # Never descend through a symlink: it may point outside the repository.
                if depth < 2 and item.is_dir(follow_symlinks=False):
                    walk(child, depth + 1)

        walk(path, 1)
        name = display(self.root, path)
        text = f"Files and directories up to 2 levels deep in {name}, hidden items excluded:\n"
        text += "\n".join(entries) if entries else "(empty)"
        if total > len(entries):
            text += f"\n[... {total - len(entries)} more entries not shown; view a subdirectory]"
        return text

    # --- edits -------------------------------------------------------------------------

    def _read_text(self, path: Path) -> str:
        name = display(self.root, path)
        if not path.exists():
            raise EditorError(f"{name} does not exist (use `create` to make a new file)")
        if not path.is_file():
            raise EditorError(f"{name} is not a regular file")
        if path.stat().st_size > MAX_EDIT_BYTES:
            raise EditorError(f"{name} is over {MAX_EDIT_BYTES} bytes; edit it with bash")
        data = path.read_bytes()
        if b"\0" in data[:BINARY_SAMPLE]:
            raise EditorError(f"{name} is a binary file; the editor changes text files only")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise EditorError(f"{name} is not UTF-8 text; edit it with bash") from None

    def _write(self, path: Path, text: str) -> None:
        # O_NOFOLLOW: the path was resolved; a symlink appearing now is not followed.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))

    def _snippet(self, path: Path, text: str, first: int, last: int) -> str:
        lines = [line.rstrip("\r") for line in text.split("\n")]
        lo = max(1, first - SNIPPET_CONTEXT)
        hi = min(len(lines), last + SNIPPET_CONTEXT)
        body = _numbered(lines[lo - 1 : hi], lo)
        return f"Edited {display(self.root, path)}; lines {lo}-{hi} now read:\n{body}"

    def _create(self, path: Path, tool_input: dict[str, Any]) -> str:
        text = _str(tool_input, "file_text")
        name = display(self.root, path)
        if path.is_dir():
            raise EditorError(f"{name} is a directory; give a file path")
        existed = path.exists()
        if existed:
            self._read_text(path)  # refuses to overwrite binaries and non-files
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path, text)
        lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        return f"{'Overwrote' if existed else 'Created'} {name} ({lines} lines)."

    def _str_replace(self, path: Path, tool_input: dict[str, Any]) -> str:
        old, new = _str(tool_input, "old_str"), _str(tool_input, "new_str", required=False)
        if not old:
            raise EditorError("`old_str` must not be empty; use `insert` to add text")
        text = self._read_text(path)
        if old not in text and "\r\n" in text and "\r\n" not in old:
            # The file has Windows line endings; the model writes "\n".
            old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
        count = text.count(old)
        name = display(self.root, path)
        if count == 0:
            raise EditorError(
                f"no match for `old_str` in {name}; it must match exactly, whitespace and "
                "indentation included (view the file to copy the text)"
            )
        if count > 1:
            starts: list[int] = []
            at = text.find(old)
            while at != -1 and len(starts) < 10:
                starts.append(text.count("\n", 0, at) + 1)
                at = text.find(old, at + 1)
            raise EditorError(
                f"`old_str` matches {count} times in {name} (lines {', '.join(map(str, starts))}); "
                "include more surrounding lines so that it matches exactly once"
            )
        at = text.index(old)
        updated = text[:at] + new + text[at + len(old) :]
        self._write(path, updated)
        first = text.count("\n", 0, at) + 1
        return self._snippet(path, updated, first, first + new.count("\n"))

    def _insert(self, path: Path, tool_input: dict[str, Any]) -> str:
        line_no = _int(tool_input.get("insert_line"), "insert_line")
        key = "insert_text" if tool_input.get("insert_text") is not None else "new_str"
        insert = _str(tool_input, key)
        text = self._read_text(path)
        lines = text.splitlines(keepends=True)
        if not 0 <= line_no <= len(lines):
            raise EditorError(
                f"`insert_line` {line_no} is out of range: {display(self.root, path)} has "
                f"{len(lines)} lines (0 inserts at the top, {len(lines)} at the end)"
            )
        newline = "\r\n" if "\r\n" in text else "\n"
        if insert and not insert.endswith("\n"):
            insert += newline
        if line_no == len(lines) and lines and not lines[-1].endswith("\n"):
            lines[-1] += newline
        updated = "".join([*lines[:line_no], insert, *lines[line_no:]])
        self._write(path, updated)
        return self._snippet(path, updated, line_no + 1, line_no + max(1, insert.count("\n")))

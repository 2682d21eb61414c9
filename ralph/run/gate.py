"""The completion gate: a promise is accepted only when artifacts and verify commands agree.

Artifact entries (front matter or ralph.yaml `artifacts:`) are a path, or a mapping:

    - path: sdlc/security-audit.md   # a file, or a glob that must match (at least `min`, default 1)
      headings: [Findings]           # markdown headings that must be present (any level)
      checklist: true                # every "- [ ]" box checked, or carrying "N/A: reason"
      boxes: ["A03 Software Supply Chain Failures"]  # boxes that must be there, ticked or N/A
      contains: ["OWASP"]            # literal text that must appear

A required heading matches a heading whose text (case and spacing ignored, a leading section
number like "3." or "2.1" dropped) is the required text or starts with it followed by a
non-word character: "Rollback" is satisfied by "## Rollback" and "## Rollback plan", not by
"## No rollback yet" or "## Rollbacks".

Checkboxes are bulleted ("- [ ]", "* [ ]", "+ [ ]") or numbered ("1. [ ]", "2) [ ]"). An open
box passes only when it says "N/A" (any case) followed by ":", a spaced hyphen " - " or an
en/em dash, and then a reason: "N/A: no XML parsing", "N/A — JSON only". "see na-notes",
"n/a-todo" or a bare "N/A:" do not count.

A required box is a checkbox whose text is the required text or starts with it followed by a
non-word character (the heading rule): "Injection" is satisfied by "- [x] Injection (SQL):
fixed", not by "- [x] Injections" or by the word anywhere else in the file. It must be ticked
("[x]") or carry "N/A: reason"; a box that is missing fails even when its name appears in prose.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import UsageError

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# A leading section number ("3.", "2.1", "4)") is not part of a heading's name.
_SECTION_NUMBER = re.compile(r"^\d+(?:\.\d+)*[.)]?\s+")
_UNCHECKED = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+\[ \]\s*(.*)$", re.M)
_BOX = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+\[([ xX])\]\s*(.*)$", re.M)
# A literal N/A (not "na-notes", "DNA/A"), then ":" or a spaced hyphen or an en/em dash, then
# a reason with at least one letter or digit.
_NA = re.compile(r"(?<![\w/])N/A(?:\s*:|\s+-\s|\s*[—–])(?=.*[^\W_])", re.I)
VERIFY_TAIL_LINES = 15

# A verify command and the directory it runs in -> (exit code, output).
RunCommand = Callable[[str, Path], tuple[int, str]]
# A throw-away clean checkout of the run's last commit: (its directory, the commit's sha).
Checkout = Callable[[], AbstractContextManager[tuple[Path, str]]]


@dataclass
class Artifact:
    path: str
    headings: list[str] = field(default_factory=list)
    checklist: bool = False
    contains: list[str] = field(default_factory=list)
    min: int = 1
    boxes: list[str] = field(default_factory=list)


def parse_artifacts(raw: list[Any], where: str = "artifacts") -> list[Artifact]:
    """Validate artifact entries; errors say which entry is wrong."""
    out: list[Artifact] = []
    for n, entry in enumerate(raw, 1):
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise UsageError(f"{where}: entry {n} needs a `path`")
        unknown = set(entry) - {"path", "headings", "checklist", "contains", "min", "boxes"}
        if unknown:
            raise UsageError(f"{where}: entry {n} has unknown keys {sorted(unknown)}")
        for key in ("headings", "contains", "boxes"):
            if not isinstance(entry.get(key) or [], list):
                raise UsageError(f"{where}: entry {n}: `{key}` must be a list of texts")
        path = entry["path"]
        if path.startswith("/") or ".." in Path(path).parts:
            raise UsageError(f"{where}: entry {n}: path {path!r} must be relative, inside the repo")
        out.append(
            Artifact(
                path,
                [str(h) for h in entry.get("headings") or []],
                bool(entry.get("checklist", False)),
                [str(c) for c in entry.get("contains") or []],
                int(entry.get("min", 1)),
                [str(b) for b in entry.get("boxes") or []],
            )
        )
    return out


def unchecked_items(text: str) -> list[str]:
    """Checklist items left open without an `N/A: reason`."""
    return [m.group(1).strip() for m in _UNCHECKED.finditer(text) if not _NA.search(m.group(1))]


def box_problems(text: str, required: list[str], report_open: bool = True) -> list[str]:
    """The required boxes that are missing or (with `report_open`) left open: neither ticked
    nor N/A: reason. A `checklist: true` artifact reports open boxes once, in its own line."""
    boxes = [(mark != " ", label.strip()) for mark, label in _BOX.findall(text)]
    problems: list[str] = []
    for want in required:
        found = [(ticked, label) for ticked, label in boxes if heading_matches(want, label)]
        if not found:
            problems.append(f"no box {want!r}")
        elif report_open and not any(ticked or _NA.search(label) for ticked, label in found):
            problems.append(f"box {want!r} is neither ticked nor 'N/A: reason'")
    return problems


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def heading_matches(required: str, heading: str) -> bool:
    """Whether a document heading satisfies a required one: the same text, or its start."""
    want = _norm(required)
    have = _SECTION_NUMBER.sub("", _norm(heading))
    if not have.startswith(want):
        return False
    rest = have[len(want) :]
    return not rest or not (rest[0].isalnum() or rest[0] == "_")


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError:
        return []


def matching_files(root: Path, pattern: str) -> tuple[list[Path], list[str]]:
    """The files under `root` that an artifact path or glob names, and the links out of the
    repository met on the way (as repository paths).

    Links are never followed out of the repository: the gate runs outside the sandbox, and
    what it matched is quoted to the model and in the report, so a link such as
    `sdlc/runbooks -> ~/notes` must show neither the host's files nor their names. `**` does
    not descend into linked directories (as `Path.glob`).
    """
    inside = root.resolve()
    files: list[Path] = []
    links: list[str] = []

    def visit(directory: Path, rel: str, parts: tuple[str, ...]) -> None:
        head, rest = parts[0], parts[1:]
        if head == "**":
            if rest:
                visit(directory, rel, rest)
            for entry in _entries(directory):
                if entry.is_dir(follow_symlinks=False):
                    visit(directory / entry.name, f"{rel}{entry.name}/", parts)
            return
        if any(c in head for c in "*?["):
            names = [e.name for e in _entries(directory) if fnmatch.fnmatchcase(e.name, head)]
        else:
            names = [head]
        for name in names:
            path = directory / name
            wanted = path.is_dir() if rest else path.is_file()
            if not wanted:
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                links.append(rel + name)  # where the match would have gone on: not followed
            elif rest:
                visit(path, f"{rel}{name}/", rest)
            else:
                files.append(path)

    parts = PurePosixPath(pattern).parts
    if parts:
        visit(root, "", parts)
    return sorted(set(files)), sorted(set(links))


def check_artifact(root: Path, art: Artifact) -> list[str]:
    """Problems with one artifact, as short exact sentences (empty when it passes)."""
    files, links = matching_files(root, art.path)
    # Named by their repository path only (see matching_files): never read, never listed.
    problems = [
        f"{link}: links outside the repository; write the artifact itself" for link in links
    ]
    if len(files) < art.min:
        if any(c in art.path for c in "*?["):
            problems.append(f"{art.path}: {len(files)} file(s) match, at least {art.min} needed")
        elif not links:
            problems.append(f"{art.path}: missing")
        return problems
    for path in files:
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        present = _HEADING.findall(text)
        for heading in art.headings:
            if not any(heading_matches(heading, h) for h in present):
                problems.append(f"{rel}: no heading {heading!r}")
        problems += [f"{rel}: {p}" for p in box_problems(text, art.boxes, not art.checklist)]
        for needle in art.contains:
            if needle not in text:
                problems.append(f"{rel}: does not contain {needle!r}")
        if art.checklist:
            open_items = unchecked_items(text)
            if open_items:
                shown = "; ".join(i[:60] for i in open_items[:5])
                more = f" (+{len(open_items) - 5} more)" if len(open_items) > 5 else ""
                problems.append(
                    f"{rel}: {len(open_items)} unchecked item(s) without 'N/A: reason': {shown}{more}"
                )
    return problems


def _tail(output: str, lines: int = VERIFY_TAIL_LINES) -> str:
    """The output's last lines, without the bash tool's own `[exit code N]` line (the reason
    names the exit code already)."""
    kept = output.rstrip().splitlines()
    if kept and re.fullmatch(r"\[exit code -?\d+\]", kept[-1].strip()):
        kept.pop()
    return "\n".join(kept[-lines:]).strip("\n")


@dataclass
class Verdict:
    """What the gate found, and what it judged (for the journal and the report)."""

    problems: list[str]
    commit: str | None = None  # the commit judged in a clean checkout
    judged: str = ""  # "clean checkout", "working tree", or "" when there was nothing to check


@dataclass
class Gate:
    """Checks a promise against the configured artifacts and verify commands.

    With `checkout` (runs that commit), both judge a clean checkout of the run's last commit:
    files the agent left uncommitted, or that a `.gitignore` it wrote hides, do not count (a
    `unittest/__main__.py` that exits 0 must not pass `python3 -m unittest`). Without it
    (`--no-commit`), they judge the working tree at `root`.
    """

    root: Path
    artifacts: list[Artifact]
    verify: list[str]
    run_command: RunCommand | None = None
    checkout: Checkout | None = None

    def check(self) -> Verdict:
        """Every reason to reject the promise; no problems accepts it."""
        if not self.artifacts and not self.verify:
            return Verdict([])
        if self.checkout is None:
            return Verdict(self._problems(self.root), None, "working tree")
        with self.checkout() as (root, sha):
            return Verdict(self._problems(root), sha, "clean checkout")

    def _problems(self, root: Path) -> list[str]:
        problems: list[str] = []
        for art in self.artifacts:
            problems += check_artifact(root, art)
        for cmd in self.verify:
            if self.run_command is None:
                raise RuntimeError("verify commands need a command runner")
            code, output = self.run_command(cmd, root)
            if code != 0:
                tail = _tail(output)
                problems.append(
                    f"verify `{cmd}` exited {code}:\n{tail}"
                    if tail.strip()
                    else f"verify `{cmd}` exited {code} (no output)"
                )
        return problems


def rejection_feedback(problems: list[str]) -> str:
    """The account of a rejected promise that the next iteration's prompt carries."""
    lines = "\n".join(f"- {p}" for p in problems)
    return (
        "[ralph] Your previous iteration promised completion, but the completion gate "
        f"rejected it:\n{lines}\nFix these before promising again."
    )

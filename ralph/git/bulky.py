"""Large or binary files a run's commits add: a person reviewing the branch (or a `--pr` run
that pushes it) should see them before they are in the history for good.

Binary as git judges it (`--numstat` shows `-`) or as git's own test has it when a
`.gitattributes` the agent wrote says otherwise: a NUL byte in the first 8,000 bytes. Every
look is bounded (commits, files, bytes read), and the names are the agent's: callers render
them inert (report_md.py through markdown.code, the terminal through ui.clean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import gitrun

LARGE_BYTES = 1_000_000  # a file at least this big is listed, text or not
SNIFF_BYTES = 8000  # where git looks for a NUL byte (buffer_is_binary)
SNIFF_TOTAL = 32_000_000  # blob bytes read at most to look for NUL bytes, over the whole run
MAX_COMMITS = 500  # commits looked at (a run makes one an iteration)
MAX_FILES = 20_000  # added or changed files looked at
REGULAR = ("100644", "100755")  # file modes of blobs that are files (not links, submodules)


@dataclass
class BulkyFile:
    """One large or binary file a commit of the run added (or rewrote)."""

    path: str
    size: int
    binary: bool
    commit: str

    def describe(self) -> str:
        """`3.2 MB, binary`: what makes it worth a look."""
        parts = [fmt_size(self.size)]
        if self.binary:
            parts.append("binary")
        return ", ".join(parts)


def fmt_size(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    if size >= 1000:
        return f"{size / 1000:.1f} kB"
    return f"{size} B"


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return gitrun.run(repo, *args, stdin=stdin).stdout


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _written(repo: Path, commits: list[str]) -> list[tuple[str, str, bool, str]]:
    """(path, new blob, git calls it binary, commit) of each regular file `commits` add or
    change: one `git diff-tree --stdin` for them all."""
    raw = _git(
        repo, "diff-tree", "--stdin", "-r", "-z", "--no-renames", "--root", "--raw", "--numstat",
        stdin="".join(f"{sha}\n" for sha in commits).encode(),
    )  # fmt: skip
    # Per commit: "SHA", then ":MODE MODE BLOB BLOB STATUS" "PATH" pairs, then numstat
    # "ADDED\tDELETED\tPATH" records ("-" for a binary file); each ends with a NUL.
    written: dict[tuple[str, str], list[Any]] = {}
    fields, i, sha = raw.split(b"\0"), 0, ""
    while i < len(fields):
        field = fields[i]
        if field.startswith(b":") and i + 1 < len(fields):
            meta = field.decode("ascii", "replace").lstrip(":").split()
            if len(meta) == 5 and meta[4] in ("A", "M", "T") and meta[1] in REGULAR:
                path = _decode(fields[i + 1])
                written[(sha, path)] = [path, meta[3], False, sha]
            i += 2
            continue
        if b"\t" in field:
            added, _, rest = field.partition(b"\t")
            key = (sha, _decode(rest.partition(b"\t")[2]))
            if added == b"-" and key in written:
                written[key][2] = True
        elif len(field) in (40, 64):
            sha = field.decode("ascii", "replace")
        i += 1
    return [(path, blob, binary, commit) for path, blob, binary, commit in written.values()]


def _sizes(repo: Path, blobs: list[str]) -> dict[str, int]:
    raw = _git(repo, "cat-file", "--batch-check", stdin="".join(f"{b}\n" for b in blobs).encode())
    sizes = {}
    for line in raw.decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob" and parts[2].isdigit():
            sizes[parts[0]] = int(parts[2])
    return sizes


def _with_nul(repo: Path, blobs: list[str]) -> set[str]:
    """Those of `blobs` (each smaller than LARGE_BYTES) with a NUL in their first bytes."""
    if not blobs:
        return set()
    raw = _git(repo, "cat-file", "--batch", stdin="".join(f"{b}\n" for b in blobs).encode())
    found, at = set(), 0
    while at < len(raw):  # "SHA blob SIZE\n" CONTENT "\n", one after the other
        end = raw.find(b"\n", at)
        if end < 0:
            break
        header = raw[at:end].split()
        if len(header) != 3 or not header[2].isdigit():
            break
        size = int(header[2])
        if b"\0" in raw[end + 1 : end + 1 + min(size, SNIFF_BYTES)]:
            found.add(header[0].decode("ascii"))
        at = end + 1 + size + 1
    return found


def bulky_files(repo: Path, commits: list[str]) -> list[BulkyFile]:
    """The large or binary files `commits` (oldest first) add or rewrite, largest first; a
    path that several commits wrote is listed once, with its largest version."""
    if not commits:
        return []
    written = _written(repo, commits[:MAX_COMMITS])[:MAX_FILES]  # path, blob, binary, commit
    if not written:
        return []
    sizes = _sizes(repo, list(dict.fromkeys(blob for _, blob, _, _ in written)))
    sniff, budget = [], SNIFF_TOTAL
    for _, blob, binary, _ in written:
        size = sizes.get(blob, 0)
        if not binary and size < LARGE_BYTES and size <= budget and blob not in sniff:
            sniff.append(blob)
            budget -= size
    nul = _with_nul(repo, sniff)
    found: dict[str, BulkyFile] = {}
    for path, blob, binary, sha in written:
        size = sizes.get(blob, 0)
        entry = BulkyFile(path, size, binary or blob in nul, sha)
        if not (entry.binary or size >= LARGE_BYTES):
            continue
        if path not in found or size > found[path].size:
            found[path] = entry
    return sorted(found.values(), key=lambda f: (-f.size, f.path))

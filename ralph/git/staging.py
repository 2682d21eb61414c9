"""Which of the paths an agent changed a commit may hold, decided from the file system.

- A nested git repository is never staged: git would record it as a gitlink (mode 160000),
  enter it in later commands and honour its configuration, which the agent wrote.
- Only regular files, symbolic links and deletions are staged: a FIFO, socket or device is
  refused (reading a FIFO blocks), and so is a file over MAX_FILE_BYTES (a 4 GB sparse file
  takes git half a minute to hash; GitHub refuses files over 100 MB).
- Well-known caches, build metadata and virtualenvs (`__pycache__/`, `node_modules/`,
  `*.egg-info/`, a directory with a `pyvenv.cfg` or a `CACHEDIR.TAG` such as Cargo's
  `target/`, ...) are skipped unless already tracked, as if they were ignored.
- Files that configure ralph (`ralph.yaml`, the run's prompt file when it lies in the
  repository) are the operator's: an agent's change to them is undone, never committed.

Every check is an `lstat` or a bounded read: nothing here follows a link or opens a FIFO.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import CONFIG_FILE, RunConfig
from ..redact import contains_secret

MAX_FILE_BYTES = 50 * 1024 * 1024
CACHE_DIRS = frozenset(
    {
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "node_modules",
        ".tox",
        ".nox",
        ".eggs",
        ".hypothesis",
    }
)
NESTED_REPO = (
    "a nested git repository, left in place: committed, it would be a gitlink whose "
    "configuration git runs; look at it before running git in this checkout yourself"
)
PROTECTED = "a file that configures ralph: the agent's change was undone"
SECRET_NAME = "its name holds a runner secret"
_SPECIAL = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


@dataclass(frozen=True)
class Refusal:
    """A changed path that was not committed, and why."""

    path: str
    reason: str


def refusal(root: Path, path: str) -> str | None:
    """Why `path` (relative to `root`) may not be staged as it is now, or None if it may."""

    if contains_secret(path):  # a pushed branch would carry the secret in its tree
        return SECRET_NAME
    try:
        info = os.lstat(root / path.rstrip("/"))
    except (FileNotFoundError, NotADirectoryError):
        return None  # a deletion
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if info.st_size > MAX_FILE_BYTES:
            return f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB ({info.st_size:,} bytes)"
        if not os.access(root / path, os.R_OK):  # git would fail the whole commit on it
            return "unreadable (permission denied)"
        return None
    if stat.S_ISLNK(mode):
        return None
    if stat.S_ISDIR(mode):
        if path.endswith("/") or os.path.lexists(root / path / ".git"):
            return NESTED_REPO  # git lists a nested repository, never a plain directory
        return None  # a tracked file replaced by a directory: staged as its deletion
    return _SPECIAL.get(stat.S_IFMT(mode), "not a regular file")


class CacheFilter:
    """Tells untracked caches and virtualenvs from real work; remembers each directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._venv: dict[str, bool] = {}

    def _is_venv(self, directory: str) -> bool:
        """A virtualenv (`pyvenv.cfg`), or a directory tagged as a cache (`CACHEDIR.TAG`, the
        Cache Directory Tagging Specification: Cargo's `target/`, pytest's and mypy's caches)."""
        known = self._venv.get(directory)
        if known is None:
            here = self.root / directory
            known = os.path.isfile(here / "pyvenv.cfg") or os.path.isfile(here / "CACHEDIR.TAG")
            self._venv[directory] = known
        return known

    def skipped(self, path: str) -> bool:
        """Whether an untracked `path` lies in a cache, build metadata or a virtualenv."""
        parts = path.rstrip("/").split("/")
        if any(part in CACHE_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
            return True
        if parts[-1] in CACHE_DIRS:
            return True
        return any(self._is_venv("/".join(parts[:n])) for n in range(1, len(parts)))


def protected_paths(cfg: RunConfig, main: Path) -> frozenset[str]:
    """Paths, relative to a checkout's root, of the files that configure this run."""
    paths = {CONFIG_FILE}
    source = cfg.prompt_source
    if source and source not in ("-", "inline") and not source.startswith("builtin:"):
        try:
            relative = Path(source).resolve().relative_to(main.resolve())
        except (OSError, ValueError):
            pass  # outside the repository: the agent cannot reach it
        else:
            paths.add(relative.as_posix())
    return frozenset(paths)


def is_protected(path: str, protected: Iterable[str]) -> bool:
    """Whether `path` is a protected file or lies under one (made a directory)."""
    path = path.rstrip("/")
    return any(path == p or path.startswith(p + "/") for p in protected)


def describe(refusals: Iterable[Refusal], shown: int = 5) -> list[str]:
    """One warning line per reason, naming the paths."""
    by_reason: dict[str, list[str]] = {}
    for item in refusals:
        by_reason.setdefault(item.reason, []).append(item.path)
    lines = []
    for reason, paths in by_reason.items():
        head = ", ".join(paths[:shown])
        more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
        lines.append(f"not committed: {head}{more} ({reason})")
    return lines


def fingerprint(root: Path, path: str) -> str:
    """What a path holds now: content hash and executable bit, link target, or absence.

    Bounded: a FIFO is never opened (O_NONBLOCK, and only after lstat says regular file), and
    a huge file is known by size and time instead of being read.
    """
    target = root / path
    try:
        info = os.lstat(target)
        if stat.S_ISLNK(info.st_mode):
            return "link:" + os.readlink(target)
        if stat.S_ISDIR(info.st_mode):
            return "dir"
        if not stat.S_ISREG(info.st_mode):
            return f"special:{stat.S_IFMT(info.st_mode)}:{info.st_ino}"
        if info.st_size > MAX_FILE_BYTES:
            return f"big:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat
                return "special"
            digest = hashlib.blake2b()
            left = MAX_FILE_BYTES + 1
            while left > 0 and (chunk := handle.read(min(left, 1 << 20))):
                digest.update(chunk)
                left -= len(chunk)
        return f"{digest.hexdigest()}:{int(bool(info.st_mode & 0o111))}"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable:{exc.errno}"

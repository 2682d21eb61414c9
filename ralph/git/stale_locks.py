"""Lock files a killed git left behind (`index.lock`, `HEAD.lock`, a branch's ref lock), cleared
before a resumed run commits again: otherwise its first commit would fail, after an iteration's
work. One that no live process holds is removed; any other is refused with a line saying what
to do. (ralph's own locks, of a run and of the checkout, are `store.locks` and `repo`'s.)
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from . import gitrun


def _git_locks(root: Path, branch: str) -> list[Path]:
    """The lock files git takes to commit on `branch` in `root`: index.lock, HEAD.lock (HEAD
    names the branch) and the branch's own."""
    names = ("index.lock", "HEAD.lock", f"refs/heads/{branch}.lock")
    asked = [arg for name in names for arg in ("--git-path", name)]
    return [
        Path(p) for p in gitrun.out(root, "rev-parse", "--path-format=absolute", *asked).split("\n")
    ]


def _held_open(path: Path) -> bool | None:
    """Whether a live process has `path` open (git keeps its lock file open until it commits
    or rolls back); None when this system cannot tell (no /proc)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    target = str(path)
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:  # closed meanwhile (the listing's own descriptor, say)
                continue
    return False


def _refuse_stale(lock: Path) -> None:
    """A lock a killed git left would fail the first commit, after an iteration's work: one no
    live process holds is removed (we hold the run and the checkout), any other refused."""
    if lock.exists() and _held_open(lock) is False:
        lock.unlink(missing_ok=True)
    if lock.exists():
        raise UsageError(
            f"{lock} exists (a git command was killed?); if no git command is running in this "
            "repository, delete it and resume"
        )


def clear_stale_locks(root: Path, branch: str, own_worktree: bool) -> None:
    """Clear the locks git would take to commit on `branch` in `root` (a resumed run's work
    root; `own_worktree`: the run's own worktree, not the user's checkout)."""
    index_lock, head_lock, branch_lock = _git_locks(root, branch)
    if own_worktree:
        # The worktree's index and HEAD are ralph's alone and we hold the run lock: a lock
        # left there is from a git process killed with the run.
        index_lock.unlink(missing_ok=True)
        head_lock.unlink(missing_ok=True)
        _refuse_stale(branch_lock)
        return
    for lock in (index_lock, head_lock, branch_lock):  # the checkout is the user's too
        _refuse_stale(lock)

"""One process per run: an exclusive `flock` on `.ralph/runs/<id>/lock` (and the campaign's
and worktree's locks), and the probe `ralph runs` uses to tell a live run from a dead one."""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path

from ..config import STATE_DIR
from ..errors import UsageError

LOCK_TRIES = 10  # attempts, 20 ms apart, to take a lock another process may be probing


class RunLock:
    """An exclusive `flock` on `.ralph/runs/<id>/lock`, held while a process runs the run.

    The kernel drops it when the process dies, however it dies, so a crash never leaves a run
    locked; the descriptor is not inherited by the agent's tool processes (O_CLOEXEC).
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"


def take_lock(path: Path, label: str = "") -> RunLock | str:
    """Take the exclusive lock at `path` and write who holds it (`label` first); the holder's
    text if another process holds it.

    Tries for a moment: `ralph runs` probes locks with a brief shared lock (`lock_holder`).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UsageError(_unwritable(path, exc)) from None
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt == LOCK_TRIES - 1:
                holder = _holder(fd)
                os.close(fd)
                return holder
            time.sleep(0.02)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{label}pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
    return RunLock(path, fd)


def _unwritable(path: Path, exc: OSError) -> str:
    """The one-line error for ralph state that cannot be written."""
    return (
        f"cannot create {path} ({exc.strerror}); ralph keeps its journal and locks in "
        f"{STATE_DIR}/ of the repository, which must be a writable directory"
    )


def lock_holder(path: Path) -> str | None:
    """Who holds the lock at `path` ("pid N on HOST"), or None when nobody does; creates nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # never taken (or removed): nobody holds it
    try:
        # Shared, so two probes never collide; a holder's exclusive lock makes it fail.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder(fd)
    finally:
        os.close(fd)  # closing drops the probe's lock
    return None


def run_lock_path(main_repo: Path, run_id: str) -> Path:
    """Where run `run_id`'s lock lives."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_id):
        raise UsageError(f"{run_id!r} is not a run id")
    return main_repo / STATE_DIR / "runs" / run_id / "lock"


def acquire_run_lock(main_repo: Path, run_id: str) -> RunLock:
    """Lock run `run_id` for this process; a UsageError naming the holder if it is taken."""
    lock = take_lock(run_lock_path(main_repo, run_id))
    if isinstance(lock, str):
        raise UsageError(
            f"run {run_id} is already running ({lock}); wait for it to end or stop it first"
        )
    return lock

"""Every process a command started ends with it, even one that left its session (`setsid -f`).

Under bwrap the command's PID namespace does this: when its first process exits, the kernel
kills the rest. Unsandboxed, killing the command's process group misses a process that made a
session of its own, and a double fork hands it to init, where it runs on after the command and
the run (writing into the repository after the final commit). So while a command runs, the
runner is a *child subreaper* (prctl PR_SET_CHILD_SUBREAPER): orphans of the command's
processes are re-parented to the runner instead of init, and afterwards everything the runner
adopted since the command started is killed and reaped, with its descendants.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator

PR_SET_CHILD_SUBREAPER = 36
# Kill-and-reap rounds after a command: each round kills every process found; a process
# forked between the listing and the kill is found in the next round.
MAX_ROUNDS = 100

_lock = threading.Lock()
_users = 0


def _set_subreaper(on: bool) -> bool:
    """Make this process a child subreaper (or stop being one); False where Linux has no prctl."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """The runner adopts orphans while at least one command runs (commands in threads share
    it: the last one to end switches it off)."""
    global _users
    with _lock:
        if _users == 0:
            _set_subreaper(True)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _set_subreaper(False)


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """The child processes of `pid` (all its threads'), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                found += [int(item) for item in f.read().split()]
        except (OSError, ValueError):
            continue
    return found


def adopted_since(started: int) -> list[int]:
    """This process's children that started at or after `started` (clock ticks)."""
    me = os.getpid()
    return [
        pid for pid in children(me) if (tick := start_time(pid)) is not None and tick >= started
    ]


def kill_adopted(started: int | None) -> int:
    """SIGKILL and reap the runner's children that started at or after `started`, with all
    their descendants; returns how many processes were killed."""
    if started is None:
        return 0
    killed: set[int] = set()
    for _ in range(MAX_ROUNDS):
        roots = adopted_since(started)
        if not roots:
            break
        tree, todo = [], list(roots)
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children(pid)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        for pid in roots:
            # The roots are this process's children: reap them (their children, once
            # orphaned, are adopted and found in the next round).
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return len(killed)

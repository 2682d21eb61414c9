"""Operating a run from elsewhere: guidance for its next iterations and requests to stop.

Requests are rows of the journal's `requests` table (`.ralph/ralph.db`), so they work from any
terminal on the machine, under `nohup`, in a worktree run and from CI, and the agent cannot
forge them: the journal is read-only inside the sandbox (with `--sandbox none` the agent can
write anything the runner can; README "Safety"). The running loop reads them between
iterations (`pending_guidance`, `stop_requested`); `ralph stop --now` also signals the run's
process, as Ctrl-C would.

Kinds: `steer` (text for the next iteration's message; with `keep`, every later iteration's
too, until withdrawn), `stop` (finish the current iteration, commit, end as `stopped`).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..store.locks import lock_holder, run_lock_path

STEER, STOP = "steer", "stop"
GUIDANCE_LIMIT = 8000  # characters of one piece of guidance


@dataclass(frozen=True)
class Guidance:
    """Operator guidance as an iteration receives it."""

    id: int
    text: str
    keep: bool


def add_guidance(conn: sqlite3.Connection, run_id: str, text: str, keep: bool = False) -> int:
    """Queue guidance for run `run_id`'s next iteration; its request id."""
    text = text.strip()
    if not text:
        raise UsageError("the guidance is empty; give the text (or - to read it from stdin)")
    if len(text) > GUIDANCE_LIMIT:
        raise UsageError(
            f"the guidance is {len(text)} characters; keep it under {GUIDANCE_LIMIT} (put "
            "longer notes in a file in the repository and point to it)"
        )
    cur = conn.execute(
        "INSERT INTO requests (run_id, kind, text, keep, created) VALUES (?, ?, ?, ?, ?)",
        (run_id, STEER, text, int(keep), time.time()),
    )
    return int(cur.lastrowid or 0)


def withdraw(conn: sqlite3.Connection, run_id: str, request_id: int | None = None) -> int:
    """Withdraw one piece of guidance (or all that still apply); how many were withdrawn."""
    where = "run_id = ? AND kind = ? AND withdrawn IS NULL AND (keep = 1 OR delivered IS NULL)"
    params: tuple[object, ...] = (run_id, STEER)
    if request_id is not None:
        where += " AND id = ?"
        params = (*params, request_id)
    cur = conn.execute(f"UPDATE requests SET withdrawn = ? WHERE {where}", (time.time(), *params))
    return cur.rowcount


def active_guidance(conn: sqlite3.Connection, run_id: str) -> list[Guidance]:
    """Guidance that a coming iteration will still receive."""
    rows = conn.execute(
        "SELECT id, text, keep FROM requests WHERE run_id = ? AND kind = ? AND withdrawn IS NULL "
        "AND (keep = 1 OR delivered IS NULL) ORDER BY id",
        (run_id, STEER),
    ).fetchall()
    return [Guidance(int(r[0]), str(r[1]), bool(r[2])) for r in rows]


def take_guidance(conn: sqlite3.Connection, run_id: str, iteration: int) -> list[Guidance]:
    """The guidance iteration `iteration` receives; one-shot guidance is marked delivered."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        given = active_guidance(conn, run_id)
        conn.execute(
            "UPDATE requests SET delivered = ?, delivered_iteration = ? WHERE run_id = ? AND "
            "kind = ? AND withdrawn IS NULL AND keep = 0 AND delivered IS NULL",
            (time.time(), iteration, run_id, STEER),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return given


def request_stop(conn: sqlite3.Connection, run_id: str) -> None:
    """Ask run `run_id` to end after its current iteration."""
    conn.execute(
        "INSERT INTO requests (run_id, kind, created) VALUES (?, ?, ?)", (run_id, STOP, time.time())
    )


def stop_requested(conn: sqlite3.Connection, run_id: str, since: float = 0.0) -> bool:
    """Whether a stop was asked for since `since` (a resumed run ignores earlier requests)."""
    row = conn.execute(
        "SELECT 1 FROM requests WHERE run_id = ? AND kind = ? AND created >= ? LIMIT 1",
        (run_id, STOP, since),
    ).fetchone()
    return row is not None


def running_pid(main_repo: Path, run_id: str) -> int | None:
    """The pid of the process running `run_id` on this host, from its lock; None if none."""
    holder = lock_holder(run_lock_path(main_repo, run_id))
    if not holder:
        return None
    # "pid N on HOST", as journal.take_lock writes it
    words = holder.split()
    try:
        pid = int(words[words.index("pid") + 1])
        host = words[words.index("on") + 1]
    except (ValueError, IndexError):
        return None
    return pid if host == os.uname().nodename else None


def interrupt(main_repo: Path, run_id: str) -> int:
    """Send SIGINT to the process running `run_id` (what Ctrl-C does); its pid."""
    pid = running_pid(main_repo, run_id)
    if pid is None:
        raise UsageError(
            f"run {run_id} is not running on this machine; nothing to stop (ralph runs shows it)"
        )
    os.kill(pid, signal.SIGINT)
    return pid


@dataclass
class JournalControl:
    """The running loop's view of its requests (loop.Control), on the journal's connection."""

    conn: sqlite3.Connection
    run_id: str
    since: float = field(default_factory=time.time)  # requests before this session are old

    def guidance(self, iteration: int) -> list[tuple[int, str, bool]]:
        return [(g.id, g.text, g.keep) for g in take_guidance(self.conn, self.run_id, iteration)]

    def stop_requested(self) -> bool:
        return stop_requested(self.conn, self.run_id, self.since)

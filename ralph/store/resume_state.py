"""What `ralph resume` reads from the journal: a run's `ResumeState` (where it stopped, what it
spent, the promise rejection its next iteration is told about) and a task-list run's task
statuses and failures in a row.

`ResumeQueries` is mixed into `Journal` beside `JournalQueries`, on the same connection."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..models.base import Usage
from ..status import FINISHED
from .schema import TOKENS


@dataclass
class ResumeState:
    """What `ralph resume` needs from the journal."""

    run_id: str
    status: str
    config: dict[str, Any]
    branch: str
    worktree: str | None
    base_commit: str
    last_iteration: int  # the last iteration that ended; resume runs the next one
    usage: Usage
    cost_usd: float | None
    elapsed_s: float
    # The completion gate's reasons for rejecting the last iteration's promise, if it did:
    # the resumed iteration gets them as feedback, as it would have without the interruption.
    rejected: list[str] | None = None


class ResumeQueries:
    """The queries resume makes (mixed into Journal)."""

    conn: sqlite3.Connection
    path: Path
    resolve: Callable[[str], str | None]  # JournalQueries'

    def resume_state(self, run: str, more: bool = False) -> ResumeState:
        """What resuming `run` needs; a UsageError when it does not exist or has finished
        (`more`: a finished run that did not complete may go on, with more iterations)."""
        run_id = self.resolve(run)
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run {run!r} in {self.path}; `ralph runs` lists them")
        if row["status"] == "completed":
            raise UsageError(
                f"run {run_id} already finished (completed: {row['exit_reason']}); there is "
                "nothing to continue: start a new run"
            )
        if row["status"] in FINISHED and not more:
            raise UsageError(
                f"run {run_id} already finished ({row['status']}: {row['exit_reason']}); "
                f"continue it with `ralph resume {run_id} --more N` (N more iterations), or "
                "start a new run"
            )
        done = self.conn.execute(
            "SELECT COALESCE(MAX(number), 0) FROM iterations i WHERE run_id = ? AND "
            "outcome IS NOT NULL AND outcome NOT IN ('interrupted', 'error') AND "
            "attempt = (SELECT MAX(attempt) "
            "FROM iterations a WHERE a.run_id = i.run_id AND a.number = i.number)",
            (run_id,),
        ).fetchone()[0]
        if row["status"] == "error" and done:
            # A fatal model error (authentication) ends the run inside an iteration, recorded
            # as failed: the model never did its work, so it runs again once that is fixed.
            last = self.conn.execute(
                "SELECT outcome FROM iterations WHERE run_id = ? AND number = ? "
                "ORDER BY attempt DESC LIMIT 1",
                (run_id, done),
            ).fetchone()
            if last is not None and last["outcome"] == "failed":
                done -= 1
        rejected = None
        config = json.loads(row["config"] or "{}")
        seen = self.conn.execute(
            "SELECT data FROM events WHERE run_id = ? AND iteration = ? AND name = 'promise_seen' "
            "ORDER BY id",
            (run_id, done),
        ).fetchall()
        for event in (json.loads(s["data"]) for s in seen):
            if event.get("token") == config.get("completion_promise") and not event.get("accepted"):
                rejected = list(event.get("reasons") or [])
        open_session = (
            row["last_seen"] - row["session_started"] if row["session_started"] is not None else 0
        )
        return ResumeState(
            run_id=row["id"],
            status=row["status"],
            config=config,
            branch=row["branch"],
            worktree=row["worktree"],
            base_commit=row["base_commit"],
            last_iteration=done,
            usage=Usage(*(row[t] for t in TOKENS)),
            cost_usd=row["cost_usd"] if row["cost_known"] else None,
            elapsed_s=row["elapsed_s"] + max(0.0, open_session),
            rejected=rejected,
        )

    def task_statuses(self, run_id: str) -> dict[str, tuple[str, str]]:
        """The statuses the runner gave tasks in run `run_id` (its task_ended events, the last
        of each task): what a resume stands by, whatever the task file now says."""
        rows = self.conn.execute(
            "SELECT data FROM events WHERE run_id = ? AND name = 'task_ended' ORDER BY id",
            (run_id,),
        ).fetchall()
        found: dict[str, tuple[str, str]] = {}
        for row in rows:
            data = json.loads(row["data"] or "{}")
            found[str(data.get("id"))] = (str(data.get("status")), str(data.get("reason") or ""))
        return found

    def task_failures(self, run_id: str, last_iteration: int) -> tuple[dict[str, int], str | None]:
        """A task-list run's failures in a row per open task (its task_retry events since the
        task last closed), and the feedback of a retry in iteration `last_iteration`, which
        the iteration a resume starts with is given."""
        rows = self.conn.execute(
            "SELECT name, iteration, data FROM events WHERE run_id = ? AND name IN "
            "('task_retry', 'task_ended') ORDER BY id",
            (run_id,),
        ).fetchall()
        failures: dict[str, int] = {}
        feedback = None
        for row in rows:
            data = json.loads(row["data"] or "{}")
            task_id = str(data.get("id"))
            if row["name"] == "task_ended":
                failures.pop(task_id, None)
                continue
            failures[task_id] = int(data.get("failures") or 0)
            if row["iteration"] == last_iteration:
                feedback = data.get("feedback")
        return failures, feedback

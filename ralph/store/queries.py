"""Reading the journal: runs and their iterations for `ralph runs` / `ralph show`, the
conversations, promises, task failures and campaigns, and what `ralph resume` needs.

`JournalQueries` is the reading half of `Journal` (journal.py writes); both share one
connection."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..models.base import Usage
from ..status import FINISHED
from .locks import lock_holder, run_lock_path
from .schema import TOKENS

LATEST = "latest"  # names the newest run wherever a run id is taken
CRASHED_REASON = "the process died without ending the run (killed, out of memory or a crash)"


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


class JournalQueries:
    """The queries over a journal's records (mixed into Journal)."""

    conn: sqlite3.Connection
    path: Path

    def recorded_commits(self, run_id: str) -> set[str]:
        """The commit shas the journal holds for run `run_id`."""
        rows = self.conn.execute(
            "SELECT commit_sha FROM iterations WHERE run_id = ? AND commit_sha IS NOT NULL",
            (run_id,),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def resolve(self, run: str) -> str | None:
        """The full id of the run `run` names, or None: `latest` (the newest run), an id, a
        unique prefix, or else a unique fragment of an id."""
        if run == LATEST:
            row = self.conn.execute(
                "SELECT id FROM runs ORDER BY started DESC, id DESC LIMIT 1"
            ).fetchone()
            return None if row is None else str(row["id"])
        ids = self._ids("substr(id, 1, ?) = ?", len(run), run)
        if run in ids:
            return run
        ids = ids or self._ids("instr(id, ?) > 0", run)
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (" …" if len(ids) > 5 else "")
            raise UsageError(f"run {run!r} is ambiguous ({shown}); give more of the id")
        return ids[0] if ids else None

    def _ids(self, where: str, *params: Any) -> list[str]:
        rows = self.conn.execute(f"SELECT id FROM runs WHERE {where} ORDER BY id", params)
        return [str(r["id"]) for r in rows.fetchall()]

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run, newest first: id, prompt, started, status, iterations, cost and more."""
        runs = [_run_summary(row) for row in self._runs_rows("")]
        for n, run in enumerate(runs):
            if run["status"] == "running" and self._crashed(run):
                # A run records run_ended before it lets go of its lock: one that ended since
                # the read above is free now but not crashed, and its row says so.
                fresh = [_run_summary(row) for row in self._runs_rows("WHERE r.id = ?", run["id"])]
                if fresh and fresh[0]["status"] != "running":
                    runs[n] = fresh[0]
                else:
                    run["status"], run["reason"] = "crashed", CRASHED_REASON
        return runs

    def _runs_rows(self, where: str, *params: Any) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT r.*, (SELECT COUNT(DISTINCT number) FROM iterations i WHERE i.run_id = r.id) "
            f"AS iterations FROM runs r {where} ORDER BY r.started DESC, r.id DESC",
            params,
        ).fetchall()

    def _crashed(self, run: dict[str, Any]) -> bool:
        """Whether a run the journal calls running has no live process: nobody holds its lock.

        Only a process on this host can be judged; a lock on a shared file system may not be.
        """
        if run["host"] not in (None, os.uname().nodename):
            return False
        try:
            path = run_lock_path(self.path.parent.parent, run["id"])
        except UsageError:
            return False
        return lock_holder(path) is None

    def conversations(self, run_id: str, iteration: int) -> list[dict[str, Any]]:
        """Iteration `iteration`'s conversations (one per attempt): system, tools, messages."""
        rows = self.conn.execute(
            "SELECT attempt, system, tools, messages FROM conversations WHERE run_id = ? AND "
            "iteration = ? ORDER BY attempt",
            (run_id, iteration),
        ).fetchall()
        return [
            {
                "attempt": r["attempt"],
                "system": r["system"],
                "tools": json.loads(r["tools"] or "[]"),
                "messages": json.loads(r["messages"] or "[]"),
            }
            for r in rows
        ]

    def get_run(self, run: str) -> dict[str, Any] | None:
        """One run (id, unique fragment or `latest`) with its iterations and totals.

        An iteration that ran more than once (interrupted, killed, resumed) is one row: every
        attempt's commits, files and usage are in it, so the rows add up to the run's totals
        and agree with git. Usage is summed from the model calls, which a killed attempt
        recorded too (its own row never ended).
        """
        run_id = self.resolve(run)
        if run_id is None:
            return None
        found = [r for r in self.list_runs() if r["id"] == run_id]
        if not found:
            return None
        summary = found[0]
        attempts = self.conn.execute(
            "SELECT * FROM iterations WHERE run_id = ? ORDER BY number, attempt", (run_id,)
        ).fetchall()
        spent = {
            row["iteration"]: row
            for row in self.conn.execute(
                f"SELECT iteration, {', '.join(f'SUM({t}) AS {t}' for t in TOKENS)}, "
                "SUM(cost_usd) AS cost_usd, SUM(cost_usd IS NULL) AS unpriced "
                "FROM model_calls WHERE run_id = ? GROUP BY iteration",
                (run_id,),
            ).fetchall()
        }
        counts = self.conn.execute(
            "SELECT (SELECT COUNT(*) FROM model_calls WHERE run_id = ?) AS model_calls, "
            "(SELECT COUNT(*) FROM tool_calls WHERE run_id = ?) AS tool_calls",
            (run_id, run_id),
        ).fetchone()
        by_number: dict[int, list[sqlite3.Row]] = {}
        for row in attempts:
            by_number.setdefault(row["number"], []).append(row)
        dead = "crashed" if summary["status"] == "crashed" else "running"
        summary["iterations_detail"] = [
            _iteration(rows, spent.get(number), dead) for number, rows in by_number.items()
        ]
        summary["model_calls"], summary["tool_calls"] = counts[0], counts[1]
        summary["commits"] = [c for it in summary["iterations_detail"] for c in it["commits"]]
        summary["promises"] = self.promises(run_id)
        return summary

    def promises(self, run_id: str) -> list[dict[str, Any]]:
        """Every promise the agent made in run `run_id`: iteration, token, accepted, reasons."""
        rows = self.conn.execute(
            "SELECT iteration, data FROM events WHERE run_id = ? AND name = 'promise_seen' "
            "ORDER BY id",
            (run_id,),
        ).fetchall()
        found = []
        for row in rows:
            data = json.loads(row["data"] or "{}")
            found.append(
                {
                    "iteration": row["iteration"],
                    "token": data.get("token"),
                    "accepted": bool(data.get("accepted")),
                    "reasons": list(data.get("reasons") or []),
                }
            )
        return found

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

    def resolve_campaign(self, ref: str) -> str | None:
        """A campaign's id from its id, a unique part of it, `latest`, or the id of one of its
        runs; None when nothing matches."""
        if ref == LATEST:
            row = self.conn.execute(
                "SELECT id FROM campaigns ORDER BY started DESC LIMIT 1"
            ).fetchone()
            return str(row[0]) if row else None
        row = self.conn.execute("SELECT campaign_id FROM runs WHERE id = ?", (ref,)).fetchone()
        if row is not None and row[0]:
            return str(row[0])
        ids = [r[0] for r in self.conn.execute("SELECT id FROM campaigns").fetchall()]
        if ref in ids:
            return ref
        found = [i for i in ids if ref in i]
        return found[0] if len(found) == 1 else None

    def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        """A campaign's row, with its phases (a list) and config (a dict)."""
        row = self.conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["phases"] = json.loads(row["phases"] or "[]")
        data["config"] = json.loads(row["config"] or "{}")
        return data

    def campaign_runs(self, campaign_id: str) -> list[dict[str, Any]]:
        """The runs of a campaign's phases, in the order they started (`phase` added), with
        the run's status as `ralph runs` shows it (a dead process's run is crashed)."""
        rows = self.conn.execute(
            "SELECT id, phase FROM runs WHERE campaign_id = ? ORDER BY started, rowid",
            (campaign_id,),
        ).fetchall()
        listed = {r["id"]: r for r in self.list_runs()}
        out = []
        for row in rows:
            run = dict(listed.get(row["id"]) or {"id": row["id"]})
            run["phase"] = row["phase"]
            out.append(run)
        return out

    def campaign_totals(self, campaign_id: str) -> tuple[Usage, float | None, float]:
        """What a campaign's runs used so far: tokens, cost (None: a price was unknown) and
        elapsed seconds; its budgets count all of it."""
        row = self.conn.execute(
            f"SELECT {', '.join(f'COALESCE(SUM({t}), 0)' for t in TOKENS)}, "
            "COALESCE(SUM(cost_usd), 0), MIN(cost_known), COALESCE(SUM(elapsed_s + "
            "CASE WHEN session_started IS NOT NULL THEN MAX(0, last_seen - session_started) "
            "ELSE 0 END), 0) FROM runs WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        usage = Usage(*(int(v) for v in row[:4]))
        cost = None if row[5] == 0 else float(row[4])
        return usage, cost, float(row[6])

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


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _run_summary(row: sqlite3.Row) -> dict[str, Any]:
    elapsed = row["elapsed_s"]
    if row["session_started"] is not None and row["last_seen"] is not None:
        elapsed += max(0.0, row["last_seen"] - row["session_started"])
    return {
        "id": row["id"],
        "prompt": row["prompt_name"],
        "prompt_source": row["prompt_source"],
        "model": row["model"],
        "started": _iso(row["started"]),
        "ended": _iso(row["ended"]),
        "status": row["status"],
        "exit_code": row["exit_code"],
        "reason": row["exit_reason"],
        "iterations": row["iterations"],
        "usage": {t: row[t] for t in TOKENS},
        "tokens": sum(row[t] for t in TOKENS),
        "cost_usd": round(row["cost_usd"], 6) if row["cost_known"] else None,
        "duration_s": round(elapsed, 3),
        "branch": row["branch"],
        "base_commit": row["base_commit"],
        "worktree": row["worktree"],
        "sessions": row["sessions"],
        "pid": row["pid"],
        "host": row["host"],
    }


def _iteration(attempts: list[sqlite3.Row], spent: sqlite3.Row | None, dead: str) -> dict[str, Any]:
    """One iteration from its attempts (oldest first) and its model calls' usage.

    `dead`: what an attempt that never ended is called (`running`, or `crashed` once its
    process is gone).
    """
    last = attempts[-1]
    files: dict[str, None] = {}
    for row in attempts:
        files.update(dict.fromkeys(json.loads(row["files_changed"] or "[]")))
    commits = [row["commit_sha"] for row in attempts if row["commit_sha"]]
    if spent is not None:
        usage = {t: int(spent[t] or 0) for t in TOKENS}
        cost = None if spent["unpriced"] else round(float(spent["cost_usd"] or 0.0), 6)
    else:
        usage, cost = dict.fromkeys(TOKENS, 0), 0.0
    durations = [row["duration_s"] for row in attempts if row["duration_s"] is not None]
    return {
        "number": last["number"],
        "attempts": len(attempts),
        "started": _iso(attempts[0]["started"]),
        "outcome": last["outcome"] or dead,
        "promise_seen": bool(last["promise_seen"]),
        "promise_accepted": bool(last["promise_accepted"]),
        "summary": last["summary"],
        "commit": commits[-1] if commits else None,
        "commits": commits,
        "files_changed": list(files),
        "usage": usage,
        "cost_usd": cost,
        "turns": sum(row["turns"] or 0 for row in attempts),
        "duration_s": round(sum(durations), 3) if durations else None,
        "error": last["error"],
        "attempts_detail": [
            {
                "attempt": row["attempt"],
                "outcome": row["outcome"] or dead,
                "commit": row["commit_sha"],
                "files_changed": json.loads(row["files_changed"] or "[]"),
                "error": row["error"],
            }
            for row in attempts
        ],
    }

"""Reading the journal's runs: which run a name means, every run with its status (a dead
process's is crashed), one run with its iterations and totals for `ralph show`, and an
iteration's conversations and a run's promises and commits.

`JournalQueries` is mixed into `Journal` (journal.py writes), on the same connection; what
resume reads is resume_state.py's, the campaigns campaigns.py's."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .locks import lock_holder, run_lock_path
from .schema import TOKENS

LATEST = "latest"  # names the newest run wherever a run id is taken
CRASHED_REASON = "the process died without ending the run (killed, out of memory or a crash)"


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
            "AS iterations, c.phases AS campaign_phases FROM runs r "
            f"LEFT JOIN campaigns c ON c.id = r.campaign_id {where} "
            "ORDER BY r.started DESC, r.id DESC",
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


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _run_summary(row: sqlite3.Row) -> dict[str, Any]:
    elapsed = row["elapsed_s"]
    if row["session_started"] is not None and row["last_seen"] is not None:
        elapsed += max(0.0, row["last_seen"] - row["session_started"])
    summary: dict[str, Any] = {
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
    if row["campaign_id"]:  # a phase of a `ralph harden` campaign; other runs have no such keys
        summary.update(_phase_of(row))
    return summary


def _phase_of(row: sqlite3.Row) -> dict[str, Any]:
    """A campaign phase's link: the campaign, the phase and where it stands among the
    campaign's phases (number, 1-based, of count)."""
    phases = json.loads(row["campaign_phases"] or "[]")
    phase = row["phase"]
    return {
        "campaign_id": row["campaign_id"],
        "phase": phase,
        "phase_number": phases.index(phase) + 1 if phase in phases else None,
        "phase_count": len(phases) or None,
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

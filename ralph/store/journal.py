"""The run journal: an embedded SQLite store (`.ralph/ralph.db`) of runs, iterations, model and
tool calls, written from the event stream, read by `ralph runs`, `ralph show` and resume.

Durability: WAL mode and one transaction per event, so a kill at any instant leaves every
event either fully recorded or absent. `synchronous=NORMAL`: in WAL mode a committed
transaction survives the death of the process (SIGKILL, OOM, a crash) because it is already
in the OS's page cache; only a power loss or kernel crash can drop the last few events, and
the store is still consistent afterwards. FULL would add an fsync to every event (tens per
iteration, milliseconds each on ordinary disks) to guard against that last case, which git
itself does not guard against either (it does not fsync objects by default).

Secrets are redacted (`ralph.redact`) before anything is written.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import STATE_DIR
from ..errors import RalphError, UsageError
from ..events import Event
from ..redact import redact_obj
from ..text import clip, clip_all
from .campaigns import CampaignRecords
from .locks import _unwritable
from .queries import JournalQueries
from .resume_state import ResumeQueries
from .schema import DB_NAME, TOKENS, _connect, db_path, dumps, migrate

OUTPUT_KEEP = 8000  # characters of a tool's output kept (head and tail)
STRING_KEEP = 4000  # characters of any one string inside a tool's input
STARTING = "starting: recorded before its branch was made"  # exit_reason of a planned run


def _tokens(usage: Any) -> list[int]:
    usage = usage if isinstance(usage, dict) else {}
    return [int(usage.get(t) or 0) for t in TOKENS]


class Journal(JournalQueries, ResumeQueries, CampaignRecords):
    """An event observer that records a run in SQLite. The queries are JournalQueries' (runs
    and iterations) and ResumeQueries' (what resume needs); campaigns are CampaignRecords'."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._attempts: dict[tuple[str, int], int] = {}

    @classmethod
    def open(cls, main_repo: Path, create: bool = True) -> Journal:
        """Open (and create, migrate) `<main_repo>/.ralph/ralph.db`."""
        path = db_path(main_repo)
        if not path.exists():
            if not create:
                raise UsageError(f"no runs recorded in {main_repo} (no {STATE_DIR}/{DB_NAME})")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(_unwritable(path, exc)) from None
        try:
            conn = _connect(path)
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            if not os.access(path.parent, os.W_OK):  # WAL needs to write beside the file
                raise UsageError(
                    f"cannot open the journal {path}: {exc}; {path.parent} is not writable (a "
                    "read-only file system or permissions)"
                ) from None
            raise RalphError(f"cannot open the journal {path}: {exc}") from None
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    # --- writing ---------------------------------------------------------------------------

    def _transaction(self, write: Callable[[sqlite3.Connection], None]) -> None:
        # A signal handler may raise Interrupted between any two of these calls: roll back
        # only what is still open, so an event is either fully written or absent.
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            write(self.conn)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise RalphError(f"cannot write the journal {self.path}: {exc}") from None
            raise

    def handle(self, event: Event) -> None:
        """Record one event, in one transaction."""
        if event.name == "model_text":
            return

        data: dict[str, Any] = redact_obj(event.data)
        writer = getattr(self, "_on_" + event.name, None)

        def write(db: sqlite3.Connection) -> None:
            if writer is not None:
                writer(db, event, data)
            # Every event is in the events table too, in order, for `ralph watch`; what the
            # structured tables already keep whole is clipped there.
            if event.name in _NOT_WATCHED:
                return
            db.execute(
                "INSERT INTO events (run_id, iteration, ts, name, level, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.run_id,
                    event.iteration,
                    event.ts,
                    event.name,
                    event.level,
                    dumps(_for_watching(data) if event.name in _STRUCTURED else data),
                ),
            )
            if event.name != "run_ended":
                db.execute("UPDATE runs SET last_seen = ? WHERE id = ?", (event.ts, event.run_id))

        self._transaction(write)

    def _on_run_started(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        worktree = d.get("root") if d.get("worktree") else None
        common = (
            d.get("model"), dumps(d.get("config", {})), d.get("branch"), d.get("base_commit"),
            worktree, d.get("root"), d.get("repo"), e.ts, e.ts, os.getpid(), os.uname().nodename,
        )  # fmt: skip
        if d.get("campaign_id"):  # a campaign's phase (campaign.py): linked to it
            self._link_phase(db, e.run_id, d)
        found = db.execute("SELECT 1 FROM runs WHERE id = ?", (e.run_id,)).fetchone()
        if found is None:
            db.execute(
                "INSERT INTO runs (model, config, branch, base_commit, worktree, root, repo, "
                "session_started, last_seen, pid, host, id, prompt_name, prompt_source, started, "
                "campaign_id, phase) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*common, e.run_id, d.get("prompt_name"), d.get("prompt"), e.ts,
                 d.get("campaign_id"), d.get("phase")),
            )  # fmt: skip
            return
        # A resumed run: close the session a dead process left open, start a new one.
        db.execute(
            "UPDATE runs SET elapsed_s = elapsed_s + COALESCE(last_seen - session_started, 0), "
            "status = 'running', exit_code = NULL, exit_reason = NULL, ended = NULL, "
            "sessions = sessions + 1, model = ?, config = ?, branch = ?, base_commit = ?, "
            "worktree = ?, root = ?, repo = ?, session_started = ?, last_seen = ?, pid = ?, "
            "host = ? WHERE id = ?",
            (*common, e.run_id),
        )
        db.execute(
            "UPDATE iterations SET outcome = 'interrupted', ended = COALESCE(ended, ?), "
            "error = COALESCE(error, 'the process ended during the iteration') "
            "WHERE run_id = ? AND outcome IS NULL",
            (e.ts, e.run_id),
        )

    def _link_phase(self, db: sqlite3.Connection, run_id: str, d: dict[str, Any]) -> None:
        db.execute(
            "UPDATE runs SET campaign_id = ?, phase = ? WHERE id = ?",
            (d.get("campaign_id"), d.get("phase"), run_id),
        )

    def _on_iteration_started(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        number = e.iteration or 0
        row = db.execute(
            "SELECT COALESCE(MAX(attempt), 0) FROM iterations WHERE run_id = ? AND number = ?",
            (e.run_id, number),
        ).fetchone()
        attempt = row[0] + 1
        db.execute(
            "INSERT INTO iterations (run_id, number, attempt, started) VALUES (?, ?, ?, ?)",
            (e.run_id, number, attempt, e.ts),
        )
        self._attempts[(e.run_id, number)] = attempt

    def _attempt(self, db: sqlite3.Connection, e: Event) -> int:
        """The attempt an event of iteration `e.iteration` belongs to: the latest one.

        A resumed process commits the dead attempt's leftover work before it starts a new
        attempt, so it has not seen that attempt begin: the journal knows which it was.
        """
        key = (e.run_id, e.iteration or 0)
        if key not in self._attempts:
            row = db.execute(
                "SELECT MAX(attempt) FROM iterations WHERE run_id = ? AND number = ?", key
            ).fetchone()
            return int(row[0] or 1)
        return self._attempts[key]

    def _on_model_call(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        tokens, cost = _tokens(d.get("usage")), d.get("cost_usd")
        db.execute(
            "INSERT INTO model_calls (run_id, iteration, attempt, turn, ts, model, stop_reason, "
            f"{', '.join(TOKENS)}, cost_usd, latency_s, retries, request_id, request_summary, "
            "response_summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e.run_id, e.iteration, self._attempt(db, e), d.get("turn"), e.ts, d.get("model"),
                d.get("stop_reason"), *tokens, cost, d.get("latency_s"), d.get("retries"),
                d.get("request_id"), _summary(d.get("request_summary")),
                _summary(d.get("response_summary")),
            ),
        )  # fmt: skip
        db.execute(
            f"UPDATE runs SET {', '.join(f'{t} = {t} + ?' for t in TOKENS)}, "
            "cost_usd = cost_usd + ?, cost_known = cost_known AND ? WHERE id = ?",
            (*tokens, cost or 0.0, cost is not None, e.run_id),
        )

    def _on_tool_finished(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        output = str(d.get("output") or "")
        db.execute(
            "INSERT INTO tool_calls (run_id, iteration, attempt, ts, tool_use_id, tool, input, "
            "output, output_chars, is_error, exit_code, duration_s) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e.run_id, e.iteration, self._attempt(db, e), e.ts, d.get("tool_use_id"), d.get("tool"),
                dumps(clip_all(d.get("input"), STRING_KEEP)), clip(output, OUTPUT_KEEP), len(output),
                bool(d.get("is_error")), d.get("exit_code"), d.get("duration_s"),
            ),
        )  # fmt: skip

    def _on_promise_seen(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        db.execute(
            "UPDATE iterations SET promise_seen = 1, promise_accepted = promise_accepted OR ? "
            "WHERE run_id = ? AND number = ? AND attempt = ?",
            (bool(d.get("accepted")), e.run_id, e.iteration, self._attempt(db, e)),
        )

    def _on_commit(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        db.execute(
            "UPDATE iterations SET commit_sha = ?, files_changed = COALESCE(files_changed, ?) "
            "WHERE run_id = ? AND number = ? AND attempt = ?",
            (
                d.get("sha"),
                dumps(d.get("files") or []),
                e.run_id,
                e.iteration,
                self._attempt(db, e),
            ),
        )

    def _on_iteration_ended(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        db.execute(
            "UPDATE iterations SET ended = ?, outcome = ?, promise_accepted = ?, summary = ?, "
            "final_text = ?, commit_sha = COALESCE(?, commit_sha), files_changed = ?, "
            f"{', '.join(f'{t} = ?' for t in TOKENS)}, cost_usd = ?, turns = ?, duration_s = ?, "
            "error = ? WHERE run_id = ? AND number = ? AND attempt = ?",
            (
                e.ts, d.get("outcome"), bool(d.get("promise")), d.get("summary"),
                d.get("final_text"), d.get("commit"), dumps(d.get("files_changed") or []),
                *_tokens(d.get("usage")), d.get("cost_usd"), d.get("turns"), d.get("duration_s"),
                d.get("error"), e.run_id, e.iteration, self._attempt(db, e),
            ),
        )  # fmt: skip

    def _on_conversation(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        db.execute(
            "INSERT OR REPLACE INTO conversations (run_id, iteration, attempt, ts, system, tools, "
            "messages) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                e.run_id, e.iteration, self._attempt(db, e), e.ts,
                clip(str(d.get("system") or ""), CONVERSATION_KEEP),
                dumps(d.get("tools") or []),
                dumps(clip_all(d.get("messages") or [], CONVERSATION_KEEP)),
            ),
        )  # fmt: skip

    def _on_run_ended(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        db.execute(
            "UPDATE runs SET status = ?, exit_code = ?, exit_reason = ?, ended = ?, "
            "elapsed_s = elapsed_s + COALESCE(? - session_started, 0), "
            "session_started = NULL, last_seen = ? WHERE id = ?",
            (d.get("status"), d.get("exit_code"), d.get("reason"), e.ts, e.ts, e.ts, e.run_id),
        )
        # A run cut short by an error (or a signal outside an iteration's own handling) ends
        # with an iteration that never did: record how, so no outcome stays empty. Resume runs
        # such an iteration again.
        cut = "interrupted" if d.get("status") == "interrupted" else "error"
        db.execute(
            "UPDATE iterations SET outcome = ?, ended = COALESCE(ended, ?), "
            "error = COALESCE(error, ?) WHERE run_id = ? AND outcome IS NULL",
            (cut, e.ts, d.get("reason"), e.run_id),
        )

    def record_planned(
        self, run_id: str, cfg: Any, model: str, branch: str, base: str, root: Path
    ) -> None:
        """Record a new run before its branch (or worktree) is made and the checkout switched
        to it: a process killed in between leaves a run `ralph resume` continues (its branch
        is made again if it is missing), not a `ralph/…` branch nothing knows. Session 0: its
        run_started opens the first session. Called again when the branch name changes."""
        worktree = str(root) if cfg.worktree else None
        now = time.time()
        row = (
            run_id, cfg.prompt_name, cfg.prompt_source, model, dumps(cfg.to_dict()), branch,
            base, worktree, str(root), str(cfg.repo), now, now, os.getpid(), os.uname().nodename,
        )  # fmt: skip

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO runs (id, prompt_name, prompt_source, model, config, branch, "
                "base_commit, worktree, root, repo, started, last_seen, pid, host, sessions, "
                "exit_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) "
                "ON CONFLICT (id) DO UPDATE SET branch = excluded.branch, "
                "worktree = excluded.worktree, root = excluded.root",
                (*row, STARTING),
            )

        self._transaction(write)

    def forget_planned(self, run_id: str) -> None:
        """Remove the record of a run that never started (its branch could not be made)."""

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM runs WHERE id = ? AND sessions = 0", (run_id,))

        self._transaction(write)

    def record_branch_commit(
        self, run_id: str, number: int, sha: str, subject: str, files: list[str], ended: bool
    ) -> None:
        """File a commit found on the run's branch that no event recorded (the process died
        right after it): on the iteration's latest attempt, which `ended` marks as ended."""

        def write(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT attempt FROM iterations WHERE run_id = ? AND number = ? "
                "ORDER BY attempt DESC LIMIT 1",
                (run_id, number),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO iterations (run_id, number, attempt) VALUES (?, ?, 1)",
                    (run_id, number),
                )
            attempt = row[0] if row is not None else 1
            db.execute(
                "UPDATE iterations SET commit_sha = ?, files_changed = ?, "
                "summary = COALESCE(summary, ?) WHERE run_id = ? AND number = ? AND attempt = ?",
                (sha, dumps(files), subject, run_id, number, attempt),
            )
            if ended:
                db.execute(
                    "UPDATE iterations SET outcome = 'ended', error = NULL, ended = COALESCE("
                    "ended, (SELECT last_seen FROM runs WHERE id = ?)) "
                    "WHERE run_id = ? AND number = ? AND attempt = ?",
                    (run_id, run_id, number, attempt),
                )

        self._transaction(write)


_STRUCTURED = {
    "run_started", "iteration_started", "model_started", "model_call", "tool_started",
    "tool_finished", "iteration_ended", "run_ended", "conversation",
}  # fmt: skip
_NOT_WATCHED = {"conversation"}  # whole in its own table; nothing a live view shows
CONVERSATION_KEEP = 30_000  # characters of any one string of a kept conversation
WATCH_KEEP = 2000  # characters of a tool's output in the events table (tool_calls has more)


def _for_watching(data: dict[str, Any]) -> dict[str, Any]:
    """A structured event's data as the events table keeps it: long strings clipped."""
    return {
        k: clip(v, WATCH_KEEP) if isinstance(v, str) and len(v) > WATCH_KEEP else v
        for k, v in data.items()
    }


def _summary(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else dumps(value)

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

import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import STATE_DIR
from .errors import RalphError, UsageError
from .events import Event
from .models.base import Usage
from .status import FINISHED
from .text import clip, clip_all

DB_NAME = "ralph.db"
TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
OUTPUT_KEEP = 8000  # characters of a tool's output kept (head and tail)
STRING_KEEP = 4000  # characters of any one string inside a tool's input
LOCK_TRIES = 10  # attempts, 20 ms apart, to take a lock another process may be probing
LATEST = "latest"  # names the newest run wherever a run id is taken
STARTING = "starting: recorded before its branch was made"  # exit_reason of a planned run
CRASHED_REASON = "the process died without ending the run (killed, out of memory or a crash)"

_TOKEN_COLS = ", ".join(f"{t} INTEGER NOT NULL DEFAULT 0" for t in TOKENS)

# Schema migrations, applied in order; version N means the first N steps have been applied.
# Never edit a released step: append a new one.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        f"""CREATE TABLE runs (
            id TEXT PRIMARY KEY, prompt_name TEXT, prompt_source TEXT, model TEXT,
            config TEXT, status TEXT NOT NULL DEFAULT 'running', exit_code INTEGER,
            exit_reason TEXT, {_TOKEN_COLS}, cost_usd REAL NOT NULL DEFAULT 0,
            cost_known INTEGER NOT NULL DEFAULT 1, branch TEXT, base_commit TEXT,
            worktree TEXT, root TEXT, repo TEXT, started REAL, ended REAL,
            elapsed_s REAL NOT NULL DEFAULT 0, session_started REAL, last_seen REAL,
            pid INTEGER, host TEXT, sessions INTEGER NOT NULL DEFAULT 1)""",
        f"""CREATE TABLE iterations (
            run_id TEXT NOT NULL, number INTEGER NOT NULL, attempt INTEGER NOT NULL,
            started REAL, ended REAL, outcome TEXT,
            promise_seen INTEGER NOT NULL DEFAULT 0, promise_accepted INTEGER NOT NULL DEFAULT 0,
            summary TEXT, final_text TEXT, commit_sha TEXT, files_changed TEXT,
            {_TOKEN_COLS}, cost_usd REAL, turns INTEGER, duration_s REAL, error TEXT,
            PRIMARY KEY (run_id, number, attempt))""",
        f"""CREATE TABLE model_calls (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, iteration INTEGER, attempt INTEGER,
            turn INTEGER, ts REAL, model TEXT, stop_reason TEXT, {_TOKEN_COLS}, cost_usd REAL,
            latency_s REAL, retries INTEGER, request_id TEXT, request_summary TEXT,
            response_summary TEXT)""",
        """CREATE TABLE tool_calls (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, iteration INTEGER, attempt INTEGER,
            ts REAL, tool_use_id TEXT, tool TEXT, input TEXT, output TEXT, output_chars INTEGER,
            is_error INTEGER, exit_code INTEGER, duration_s REAL)""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, iteration INTEGER, ts REAL,
            name TEXT NOT NULL, level TEXT, data TEXT)""",
        "CREATE INDEX model_calls_run ON model_calls (run_id, iteration)",
        "CREATE INDEX tool_calls_run ON tool_calls (run_id, iteration)",
        "CREATE INDEX events_run ON events (run_id, iteration)",
    ),
    (  # 2: what operators ask of a run from elsewhere (ralph steer / ralph stop), see control.py
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL, text TEXT,
            keep INTEGER NOT NULL DEFAULT 0, created REAL, withdrawn REAL,
            delivered_iteration INTEGER, delivered REAL)""",
        "CREATE INDEX requests_run ON requests (run_id)",
    ),
    (  # 3: each iteration's conversation as the model saw it, for `ralph show --iteration`
        """CREATE TABLE conversations (
            run_id TEXT NOT NULL, iteration INTEGER NOT NULL, attempt INTEGER NOT NULL,
            ts REAL, system TEXT, tools TEXT, messages TEXT,
            PRIMARY KEY (run_id, iteration, attempt))""",
    ),
    (  # 4: hardening campaigns (`ralph harden`, campaign.py): phases run one after another,
        # each a run linked to its campaign
        """CREATE TABLE campaigns (
            id TEXT PRIMARY KEY, phases TEXT NOT NULL, config TEXT,
            status TEXT NOT NULL DEFAULT 'running', exit_code INTEGER, exit_reason TEXT,
            branch TEXT, worktree TEXT, base_commit TEXT, started REAL, ended REAL,
            pr_url TEXT)""",
        "ALTER TABLE runs ADD COLUMN campaign_id TEXT",
        "ALTER TABLE runs ADD COLUMN phase TEXT",
        "CREATE INDEX runs_campaign ON runs (campaign_id)",
    ),
]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def migrate(conn: sqlite3.Connection, steps: list[tuple[str, ...]] | None = None) -> int:
    """Bring the schema up to date, one transaction per step; returns the version."""
    steps = MIGRATIONS if steps is None else steps
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied REAL)"
    )
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")  # re-read under the lock: another process may migrate
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
            if version > len(steps):
                raise UsageError(
                    f"the journal was written by a newer ralph (schema {version}, this one "
                    f"knows {len(steps)}); upgrade ralph-loop"
                )
            if version == len(steps):
                conn.execute("COMMIT")
                return version
            for statement in steps[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version + 1, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def db_path(main_repo: Path) -> Path:
    return main_repo / STATE_DIR / DB_NAME


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _tokens(usage: Any) -> list[int]:
    usage = usage if isinstance(usage, dict) else {}
    return [int(usage.get(t) or 0) for t in TOKENS]


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


class Journal:
    """An event observer that records a run in SQLite, and the queries over the records."""

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
        from .redact import redact_obj

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
                    _dumps(_for_watching(data) if event.name in _STRUCTURED else data),
                ),
            )
            if event.name != "run_ended":
                db.execute("UPDATE runs SET last_seen = ? WHERE id = ?", (event.ts, event.run_id))

        self._transaction(write)

    def _on_run_started(self, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        worktree = d.get("root") if d.get("worktree") else None
        common = (
            d.get("model"), _dumps(d.get("config", {})), d.get("branch"), d.get("base_commit"),
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
                _dumps(clip_all(d.get("input"), STRING_KEEP)), clip(output, OUTPUT_KEEP), len(output),
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
                _dumps(d.get("files") or []),
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
                d.get("final_text"), d.get("commit"), _dumps(d.get("files_changed") or []),
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
                _dumps(d.get("tools") or []),
                _dumps(clip_all(d.get("messages") or [], CONVERSATION_KEEP)),
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
            run_id, cfg.prompt_name, cfg.prompt_source, model, _dumps(cfg.to_dict()), branch,
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
                (sha, _dumps(files), subject, run_id, number, attempt),
            )
            if ended:
                db.execute(
                    "UPDATE iterations SET outcome = 'ended', error = NULL, ended = COALESCE("
                    "ended, (SELECT last_seen FROM runs WHERE id = ?)) "
                    "WHERE run_id = ? AND number = ? AND attempt = ?",
                    (run_id, run_id, number, attempt),
                )

        self._transaction(write)

    def recorded_commits(self, run_id: str) -> set[str]:
        """The commit shas the journal holds for run `run_id`."""
        rows = self.conn.execute(
            "SELECT commit_sha FROM iterations WHERE run_id = ? AND commit_sha IS NOT NULL",
            (run_id,),
        ).fetchall()
        return {str(r[0]) for r in rows}

    # --- reading ---------------------------------------------------------------------------

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

    # --- campaigns (`ralph harden`, campaign.py) ---------------------------------------------

    def start_campaign(self, campaign_id: str, phases: list[str], config: dict[str, Any]) -> None:
        from .redact import redact_obj

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO campaigns (id, phases, config, started) VALUES (?, ?, ?, ?)",
                (campaign_id, _dumps(phases), _dumps(redact_obj(config)), time.time()),
            )

        self._transaction(write)

    def update_campaign(self, campaign_id: str, **values: Any) -> None:
        """Set columns of a campaign (branch, worktree, base_commit, status, exit_code,
        exit_reason, ended, pr_url)."""
        allowed = {"branch", "worktree", "base_commit", "status", "exit_code", "exit_reason",
                   "ended", "pr_url"}  # fmt: skip
        assert set(values) <= allowed, values
        if not values:
            return
        from .redact import redact

        cleaned = {k: redact(v) if isinstance(v, str) else v for k, v in values.items()}

        def write(db: sqlite3.Connection) -> None:
            sets = ", ".join(f"{k} = ?" for k in cleaned)
            db.execute(
                f"UPDATE campaigns SET {sets} WHERE id = ?", (*cleaned.values(), campaign_id)
            )

        self._transaction(write)

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
    return value if isinstance(value, str) else _dumps(value)


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


# --- one process per run -------------------------------------------------------------------


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

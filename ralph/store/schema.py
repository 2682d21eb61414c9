"""The journal's schema: its migrations, applied in order, each in its own transaction.

A migration is a named function; the journal's version N means the first N have run (the
`schema_version` table). Never edit a released migration: append a new one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import STATE_DIR
from ..errors import UsageError

DB_NAME = "ralph.db"
TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")

_TOKEN_COLS = ", ".join(f"{t} INTEGER NOT NULL DEFAULT 0" for t in TOKENS)

Migration = Callable[[sqlite3.Connection], object]


def dumps(value: Any) -> str:
    """A value as the journal's JSON columns keep it (non-ASCII as is, the unknown as str)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def m1_runs_iterations_calls_events(db: sqlite3.Connection) -> None:
    """1: Runs, iterations, model and tool calls, and every event (for `ralph watch`)"""
    db.execute(
        f"""CREATE TABLE runs (
            id TEXT PRIMARY KEY, prompt_name TEXT, prompt_source TEXT, model TEXT,
            config TEXT, status TEXT NOT NULL DEFAULT 'running', exit_code INTEGER,
            exit_reason TEXT, {_TOKEN_COLS}, cost_usd REAL NOT NULL DEFAULT 0,
            cost_known INTEGER NOT NULL DEFAULT 1, branch TEXT, base_commit TEXT,
            worktree TEXT, root TEXT, repo TEXT, started REAL, ended REAL,
            elapsed_s REAL NOT NULL DEFAULT 0, session_started REAL, last_seen REAL,
            pid INTEGER, host TEXT, sessions INTEGER NOT NULL DEFAULT 1)"""
    )
    db.execute(
        f"""CREATE TABLE iterations (
            run_id TEXT NOT NULL, number INTEGER NOT NULL, attempt INTEGER NOT NULL,
            started REAL, ended REAL, outcome TEXT,
            promise_seen INTEGER NOT NULL DEFAULT 0, promise_accepted INTEGER NOT NULL DEFAULT 0,
            summary TEXT, final_text TEXT, commit_sha TEXT, files_changed TEXT,
            {_TOKEN_COLS}, cost_usd REAL, turns INTEGER, duration_s REAL, error TEXT,
            PRIMARY KEY (run_id, number, attempt))"""
    )
    db.execute(
        f"""CREATE TABLE model_calls (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, iteration INTEGER, attempt INTEGER,
            turn INTEGER, ts REAL, model TEXT, stop_reason TEXT, {_TOKEN_COLS}, cost_usd REAL,
            latency_s REAL, retries INTEGER, request_id TEXT, request_summary TEXT,
            response_summary TEXT)"""
    )
    db.execute(
        """CREATE TABLE tool_calls (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, iteration INTEGER, attempt INTEGER,
            ts REAL, tool_use_id TEXT, tool TEXT, input TEXT, output TEXT, output_chars INTEGER,
            is_error INTEGER, exit_code INTEGER, duration_s REAL)"""
    )
    db.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, iteration INTEGER, ts REAL,
            name TEXT NOT NULL, level TEXT, data TEXT)"""
    )
    db.execute("CREATE INDEX model_calls_run ON model_calls (run_id, iteration)")
    db.execute("CREATE INDEX tool_calls_run ON tool_calls (run_id, iteration)")
    db.execute("CREATE INDEX events_run ON events (run_id, iteration)")


def m2_requests(db: sqlite3.Connection) -> None:
    """2: What operators ask of a run from elsewhere (ralph steer / ralph stop), see control.py"""
    db.execute(
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL, text TEXT,
            keep INTEGER NOT NULL DEFAULT 0, created REAL, withdrawn REAL,
            delivered_iteration INTEGER, delivered REAL)"""
    )
    db.execute("CREATE INDEX requests_run ON requests (run_id)")


def m3_conversations(db: sqlite3.Connection) -> None:
    """3: Each iteration's conversation as the model saw it, for `ralph show --iteration`"""
    db.execute(
        """CREATE TABLE conversations (
            run_id TEXT NOT NULL, iteration INTEGER NOT NULL, attempt INTEGER NOT NULL,
            ts REAL, system TEXT, tools TEXT, messages TEXT,
            PRIMARY KEY (run_id, iteration, attempt))"""
    )


def m4_campaigns(db: sqlite3.Connection) -> None:
    """4: Hardening campaigns (`ralph harden`, campaign.py): phases run one after another, each a run linked to its campaign"""
    db.execute(
        """CREATE TABLE campaigns (
            id TEXT PRIMARY KEY, phases TEXT NOT NULL, config TEXT,
            status TEXT NOT NULL DEFAULT 'running', exit_code INTEGER, exit_reason TEXT,
            branch TEXT, worktree TEXT, base_commit TEXT, started REAL, ended REAL,
            pr_url TEXT)"""
    )
    db.execute("ALTER TABLE runs ADD COLUMN campaign_id TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN phase TEXT")
    db.execute("CREATE INDEX runs_campaign ON runs (campaign_id)")


MIGRATIONS: list[Migration] = [
    m1_runs_iterations_calls_events,
    m2_requests,
    m3_conversations,
    m4_campaigns,
]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def migrate(conn: sqlite3.Connection, steps: list[Migration] | None = None) -> int:
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
            steps[version](conn)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version + 1, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def db_path(main_repo: Path) -> Path:
    return main_repo / STATE_DIR / DB_NAME

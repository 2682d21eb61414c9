"""`ralph steer`, `ralph stop` and `ralph watch`: operating a run from another terminal.

They act through the journal (`control.py` for requests; the events table for watching), so
they work for a run started anywhere on this machine: another terminal, `nohup`, a worktree.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .errors import ExitCode, UsageError
from .events import Event, Observer
from .run import control
from .status import RunStatus
from .store.journal import Journal
from .store.queries import LATEST
from .store.schema import db_path

WATCH_POLL_S = 0.25
WATCH_LINGER_S = 5.0  # after run_ended: how long to wait for the pull request and the lock


def open_journal(start: Path) -> tuple[Path, Journal]:
    """The main repository holding `start` and its journal; a UsageError without runs."""
    from .config import require_main_repo  # the settings table: not for `ralph stop`

    main = require_main_repo(start)
    if not db_path(main).exists():
        raise UsageError(f"no runs recorded in {main}; start one with ralph-loop PROMPT")
    return main, Journal.open(main, create=False)


def resolve_run(journal: Journal, run: str | None) -> str:
    """The run id `run` names (journal.resolve); nothing names the latest run."""
    found = journal.resolve(run or LATEST)
    if found is None:
        if run in (None, LATEST):
            raise UsageError("no runs recorded in this repository; start one with ralph-loop")
        raise UsageError(f"no run {run!r} in this repository; `ralph runs` lists them")
    return found


def _status(journal: Journal, run_id: str) -> str:
    found = journal.get_run(run_id)
    return str(found["status"]) if found else "unknown"


def steer_command(
    start: Path,
    run: str | None,
    text: str | None,
    *,
    keep: bool = False,
    withdraw: str | None = None,
    out: TextIO = sys.stdout,
    stdin: TextIO = sys.stdin,
) -> None:
    """Queue guidance for a run's next iteration, list it, or withdraw it."""
    _main, journal = open_journal(start)
    try:
        run_id = resolve_run(journal, run)
        if withdraw is not None:
            which = None if withdraw == "all" else _request_id(withdraw)
            count = control.withdraw(journal.conn, run_id, which)
            out.write(f"withdrew {count} piece{'s' if count != 1 else ''} of guidance\n")
            return
        if text is None:
            for g in control.active_guidance(journal.conn, run_id):
                out.write(f"{g.id}\t{'standing' if g.keep else 'next iteration'}\t{g.text}\n")
            return
        if text == "-":
            text = stdin.read()
        status = RunStatus(_status(journal, run_id))
        if status.finished:
            raise UsageError(
                f"run {run_id} has {status.label}; guidance reaches only a running or resumable run"
            )
        request = control.add_guidance(journal.conn, run_id, text, keep)
        when = "every coming iteration" if keep else "the next iteration"
        out.write(f"guidance {request} queued for {when} of run {run_id}\n")
    finally:
        journal.close()


def _request_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"--withdraw takes a guidance id (from `ralph steer RUN`) or all, not {text!r}"
        ) from None


def stop_command(start: Path, run: str | None, now: bool, out: TextIO = sys.stdout) -> None:
    """Ask a run to stop after its iteration (or now, as Ctrl-C does)."""
    main, journal = open_journal(start)
    try:
        run_id = resolve_run(journal, run)
        pid = control.running_pid(main, run_id)
        if pid is None:
            raise UsageError(
                f"run {run_id} is not running on this machine ({_status(journal, run_id)}); "
                "nothing to stop"
            )
        if now:
            control.interrupt(main, run_id)
            out.write(f"sent SIGINT to run {run_id} (pid {pid}): it stops now, resumable\n")
            return
        control.request_stop(journal.conn, run_id)
        out.write(
            f"run {run_id} (pid {pid}) will stop after its current iteration; "
            f"`ralph stop {run_id} --now` stops it at once\n"
        )
    finally:
        journal.close()


class _Follower:
    """Reads a run's events from the journal in order, each once, into a view."""

    def __init__(self, journal: Journal, run_id: str, view: Observer) -> None:
        self.journal, self.run_id, self.view = journal, run_id, view
        self.last = 0  # the id of the last event shown
        self.ended: Event | None = None  # run_ended, once seen

    def drain(self) -> Event | None:
        """Show the events written since the last call; run_ended if it has been seen."""
        rows = self.journal.conn.execute(
            "SELECT id, iteration, ts, name, level, data FROM events WHERE run_id = ? AND id > ? "
            "ORDER BY id",
            (self.run_id, self.last),
        ).fetchall()
        for r in rows:
            data = json.loads(r["data"] or "{}")
            event = Event(
                r["name"], self.run_id, r["iteration"], data, r["ts"], r["level"] or "info"
            )
            self.view.handle(event)
            self.last = int(r["id"])
            if event.name == "run_ended":
                self.ended = event
        return self.ended


def watch_observer(log_format: str, err: TextIO, config: dict[str, Any]) -> Observer:
    """The view `ralph watch` draws: the live view on a terminal, plain lines otherwise."""
    from .views.plain import PlainLines  # the views: only `ralph watch` draws
    from .views.ui import _is_terminal  # (the same)

    if log_format == "json":
        from .views.logs import JsonLines  # (the same)

        return JsonLines(err)
    if log_format == "rich" or (log_format == "auto" and _is_terminal(err)):
        from rich.console import Console  # rich: only for the live view

        from .views.live import LiveView  # (the same)

        return LiveView(
            Console(file=err, force_terminal=True if log_format == "rich" else None),
            max_cost=config.get("max_cost"),
            max_tokens=config.get("max_tokens"),
            timeout=config.get("timeout"),
        )
    return PlainLines(err)


def watch_command(
    start: Path,
    run: str | None,
    log_format: str = "auto",
    err: TextIO = sys.stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Follow a run's events until it ends; the run's exit code (1 if it died unended)."""
    main, journal = open_journal(start)
    view: Observer | None = None
    try:
        run_id = resolve_run(journal, run)
        row = journal.conn.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
        view = watch_observer(log_format, err, json.loads((row and row[0]) or "{}"))
        follow = _Follower(journal, run_id, view)
        linger_until: float | None = None
        while True:
            ended = follow.drain()
            alive = control.running_pid(main, run_id) is not None
            if ended is not None:
                # The pull request and the report come after run_ended: wait for the process
                # to let go of the run, briefly.
                linger_until = linger_until or time.monotonic() + WATCH_LINGER_S
                if not alive or time.monotonic() > linger_until:
                    follow.drain()
                    return int(ended.data.get("exit_code") or 0)
            elif not alive:
                ended = follow.drain()  # it may have ended between the two reads
                if ended is not None:
                    return int(ended.data.get("exit_code") or 0)
                err.write(
                    f"ralph: run {run_id} is not running ({_status(journal, run_id)}); "
                    f"`ralph show {run_id}` has what it did\n"
                )
                return int(ExitCode.ERROR)
            sleep(WATCH_POLL_S)
    finally:
        if view is not None:
            view.close()
        journal.close()

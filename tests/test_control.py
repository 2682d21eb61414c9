"""Operator requests in the journal: guidance one-shot and standing, withdrawal, stop requests,
and finding the process that runs a run from its lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ralph.errors import UsageError
from ralph.run import control
from ralph.store.journal import Journal
from ralph.store.locks import acquire_run_lock


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.open(tmp_path)


def test_one_shot_guidance_reaches_one_iteration_and_standing_guidance_every_one(
    journal: Journal,
) -> None:
    conn = journal.conn
    first = control.add_guidance(conn, "r1", "  Focus on the login handler first. ")
    standing = control.add_guidance(conn, "r1", "Never touch vendor/.", keep=True)
    control.add_guidance(conn, "other-run", "not for r1")
    got = control.take_guidance(conn, "r1", 3)
    assert [(g.id, g.text, g.keep) for g in got] == [
        (first, "Focus on the login handler first.", False),
        (standing, "Never touch vendor/.", True),
    ]
    assert [g.id for g in control.take_guidance(conn, "r1", 4)] == [standing]
    row = conn.execute("SELECT delivered_iteration FROM requests WHERE id = ?", (first,)).fetchone()
    assert row[0] == 3
    assert control.withdraw(conn, "r1", standing) == 1
    assert control.take_guidance(conn, "r1", 5) == []
    assert [g.text for g in control.take_guidance(conn, "other-run", 1)] == ["not for r1"]


def test_withdrawing_everything_and_bad_guidance(journal: Journal) -> None:
    conn = journal.conn
    control.add_guidance(conn, "r1", "a")
    control.add_guidance(conn, "r1", "b", keep=True)
    assert control.withdraw(conn, "r1") == 2
    assert control.active_guidance(conn, "r1") == []
    with pytest.raises(UsageError, match="empty"):
        control.add_guidance(conn, "r1", "   ")
    with pytest.raises(UsageError, match="under 8000"):
        control.add_guidance(conn, "r1", "x" * 9000)


def test_stop_requests_count_only_after_a_session_started(journal: Journal) -> None:
    conn = journal.conn
    assert not control.stop_requested(conn, "r1")
    control.request_stop(conn, "r1")
    assert control.stop_requested(conn, "r1")
    assert not control.stop_requested(conn, "r2")
    assert not control.stop_requested(conn, "r1", since=time.time() + 1)


def test_running_pid_comes_from_the_run_lock(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    assert control.running_pid(tmp_path, "20261206-000000-abcd") is None
    with pytest.raises(UsageError, match="not running on this machine"):
        control.interrupt(tmp_path, "20261206-000000-abcd")
    lock = acquire_run_lock(tmp_path, "20261206-000000-abcd")
    try:
        # Another process probes it, as `ralph stop` from a second terminal would.
        code = (
            "import sys; from pathlib import Path; from ralph.run import control; "
            f"print(control.running_pid(Path({str(tmp_path)!r}), '20261206-000000-abcd'))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out == str(os.getpid())
    finally:
        lock.release()
    assert control.running_pid(tmp_path, "20261206-000000-abcd") is None

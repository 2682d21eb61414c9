"""The SQLite journal: events in, rows out; WAL, migrations, redaction, resume, locks, kills."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ralph.errors import UsageError
from ralph.events import Bus, Event
from ralph.models.base import Usage
from ralph.store import journal as journal_mod
from ralph.store import queries, schema
from ralph.store.history import format_run, runs_command, show_command
from ralph.store.journal import Journal
from ralph.store.locks import acquire_run_lock, lock_holder, run_lock_path
from ralph.store.resume_state import ResumeState
from ralph.store.schema import db_path, migrate

SECRET = "sk-test-not-a-real-key-0123456789"
USAGE = {
    "input_tokens": 100,
    "output_tokens": 20,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 50,
}


def started(bus: Bus, **extra: Any) -> None:
    config = {"completion_promise": "DONE", "max_iterations": 3, "prompt": "harden", **extra}
    bus.emit(
        "run_started",
        prompt="prompts/security.md",
        prompt_name="security",
        model="claude-test",
        max_iterations=3,
        repo="/repo",
        root="/repo",
        branch="ralph/security-20250101-000000",
        base_commit="a" * 40,
        worktree=False,
        config=config,
    )


def iteration(bus: Bus, i: int, *, end: bool = True, cost: float | None = 0.01) -> None:
    """One iteration's events: a model call, a tool call, a commit, the end."""
    bus.iteration = i
    bus.emit("iteration_started", max_iterations=3)
    bus.emit("model_started", turn=1)
    bus.emit("model_text", text="thinking…")
    bus.emit(
        "model_call",
        turn=1,
        model="claude-test",
        stop_reason="tool_use",
        usage=USAGE,
        cost_usd=cost,
        latency_s=0.5,
        retries=1,
        request_id="req_1",
    )
    bus.emit("tool_started", tool_use_id="t1", tool="bash", input={"command": "ls"})
    bus.emit(
        "tool_finished",
        tool_use_id="t1",
        tool="bash",
        input={"command": "ls"},
        is_error=False,
        exit_code=0,
        duration_s=0.1,
        output="README.md\n",
    )
    if not end:
        return
    bus.emit("commit", sha=f"{i:040d}", files=["a.py"], message=f"iteration {i}")
    bus.emit(
        "iteration_ended",
        outcome="ended",
        summary=f"did part {i}",
        final_text=f"did part {i}",
        promise=False,
        files_changed=["a.py"],
        commit=f"{i:040d}",
        usage=USAGE,
        cost_usd=cost,
        duration_s=1.5,
        turns=1,
        error=None,
    )


def ended(bus: Bus, status: str, code: int, iterations: int) -> None:
    bus.iteration = None
    bus.emit(
        "run_ended",
        status=status,
        exit_code=code,
        reason=f"{status} reason",
        iterations=iterations,
        usage=USAGE,
        cost_usd=0.02,
        duration_s=3.0,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)  # where find_main_repo looks; the journal needs no git
    return root


def test_events_become_rows(repo: Path) -> None:
    journal = Journal.open(repo)
    bus = Bus("run-1", [journal])
    started(bus)
    iteration(bus, 1)
    bus.emit("warning", level="warning", message="no sandbox")
    iteration(bus, 2)
    bus.emit("promise_seen", token="DONE", accepted=True, reasons=[])
    ended(bus, "completed", 0, 2)
    bus.close()

    db = sqlite3.connect(db_path(repo))
    db.row_factory = sqlite3.Row
    run = db.execute("SELECT * FROM runs").fetchone()
    assert (run["id"], run["status"], run["exit_code"], run["prompt_name"]) == (
        "run-1",
        "completed",
        0,
        "security",
    )
    assert run["input_tokens"] == 200 and run["cache_read_input_tokens"] == 100
    assert run["cost_usd"] == pytest.approx(0.02)
    assert json.loads(run["config"])["completion_promise"] == "DONE"
    its = db.execute("SELECT * FROM iterations ORDER BY number").fetchall()
    assert [(r["number"], r["attempt"], r["outcome"]) for r in its] == [
        (1, 1, "ended"),
        (2, 1, "ended"),
    ]
    assert its[1]["promise_seen"] == 1 and its[0]["commit_sha"] == f"{1:040d}"
    assert json.loads(its[0]["files_changed"]) == ["a.py"]
    calls = db.execute("SELECT * FROM model_calls").fetchall()
    assert [(c["iteration"], c["retries"], c["stop_reason"]) for c in calls] == [
        (1, 1, "tool_use"),
        (2, 1, "tool_use"),
    ]
    tools = db.execute("SELECT * FROM tool_calls").fetchall()
    tool = tools[0]
    assert (tool["tool"], json.loads(tool["input"]), tool["output"]) == (
        "bash",
        {"command": "ls"},
        "README.md\n",
    )
    names = [r[0] for r in db.execute("SELECT name FROM events ORDER BY id")]
    assert "model_text" not in names  # streaming deltas are not kept
    # Every other event is there in order (`ralph watch` replays them), the structured ones too.
    assert [n for n in names if n not in journal_mod._STRUCTURED] == [
        "commit", "warning", "commit", "promise_seen",
    ]  # fmt: skip
    assert names[0] == "run_started" and "tool_finished" in names

    shown = Journal.open(repo, create=False).get_run("run-1")
    assert shown is not None
    assert shown["iterations"] == 2 and shown["model_calls"] == 2 and shown["tool_calls"] == 2
    assert [i["summary"] for i in shown["iterations_detail"]] == ["did part 1", "did part 2"]


def test_wal_mode_and_synchronous(repo: Path) -> None:
    journal = Journal.open(repo)
    assert journal.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    journal.close()
    other = sqlite3.connect(db_path(repo))  # WAL is a property of the file
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_version_1_store_opens_with_newer_migrations(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = db_path(repo)
    path.parent.mkdir(parents=True)
    old = sqlite3.connect(path, isolation_level=None)
    assert migrate(old, schema.MIGRATIONS[:1]) == 1
    old.execute("INSERT INTO runs (id, prompt_name, started) VALUES ('old-run', 'security', 1.0)")
    old.close()

    def m_note(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    newer = [*schema.MIGRATIONS, m_note]
    monkeypatch.setattr(schema, "MIGRATIONS", newer)
    journal = Journal.open(repo)
    versions = [r[0] for r in journal.conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, len(newer) + 1))
    assert [r["id"] for r in journal.list_runs()] == ["old-run"]
    journal.conn.execute("UPDATE runs SET note = 'x'")  # the new column exists
    journal.close()
    # a store from a newer ralph than this one is refused, not damaged
    monkeypatch.setattr(schema, "MIGRATIONS", newer[:1])
    with pytest.raises(UsageError, match="newer ralph"):
        Journal.open(repo)


def test_secrets_are_redacted_before_they_are_written(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SERVICE_TOKEN", SECRET)
    journal = Journal.open(repo)
    bus = Bus("run-s", [journal])
    started(bus, note=f"key is {SECRET}")
    bus.iteration = 1
    bus.emit("iteration_started", max_iterations=3)
    bus.emit(
        "tool_finished",
        tool_use_id="t",
        tool="bash",
        input={"command": f"echo {SECRET}"},
        is_error=False,
        exit_code=0,
        duration_s=0.1,
        output=f"{SECRET}\n" + "x" * 20000,
    )
    bus.emit("warning", message=f"saw {SECRET}")
    bus.emit("iteration_ended", outcome="ended", summary=SECRET, final_text=SECRET, usage={})
    stored = journal.conn.execute("SELECT output, output_chars FROM tool_calls").fetchone()
    assert stored["output"].startswith("[REDACTED]") and stored["output_chars"] > 20000
    assert len(stored["output"]) < journal_mod.OUTPUT_KEEP + 100
    bus.close()
    files = list(db_path(repo).parent.glob("ralph.db*"))
    assert files
    for file in files:
        assert SECRET.encode() not in file.read_bytes()


def test_resume_state_after_a_kill_and_after_an_interrupt(repo: Path) -> None:
    journal = Journal.open(repo)
    bus = Bus("run-k", [journal])
    started(bus)
    iteration(bus, 1)
    iteration(bus, 2, end=False)  # the process is killed here
    journal.close()

    journal = Journal.open(repo)
    state = journal.resume_state("run-k")
    assert isinstance(state, ResumeState)
    assert (state.status, state.last_iteration, state.branch) == (
        "running",
        1,
        "ralph/security-20250101-000000",
    )
    assert state.base_commit == "a" * 40 and state.worktree is None
    assert state.config["completion_promise"] == "DONE"
    # both model calls were billed, the killed iteration's too
    assert state.usage == Usage(200, 40, 10, 100)
    assert state.cost_usd == pytest.approx(0.02)

    # the resumed process: iteration 2 again, interrupted by a signal this time
    bus = Bus("run-k", [journal])
    started(bus)
    bus.iteration = 2
    bus.emit("iteration_started", max_iterations=3)
    bus.emit("iteration_ended", outcome="interrupted", summary="interrupted", usage={})
    ended(bus, "interrupted", 130, 2)
    state = journal.resume_state("run-k")
    assert (state.status, state.last_iteration) == ("interrupted", 1)

    # and the third process finishes it
    started(bus)
    iteration(bus, 2)
    iteration(bus, 3)
    ended(bus, "max_iterations", 3, 3)
    run = journal.get_run("run-k")
    assert run is not None
    detail = run["iterations_detail"]
    assert [(i["number"], i["attempts"], i["outcome"]) for i in detail] == [
        (1, 1, "ended"),
        (2, 3, "ended"),
        (3, 1, "ended"),
    ]
    assert run["sessions"] == 3 and run["status"] == "max_iterations"
    attempts = journal.conn.execute(
        "SELECT attempt, outcome, error FROM iterations WHERE number = 2 ORDER BY attempt"
    ).fetchall()
    assert [a["outcome"] for a in attempts] == ["interrupted", "interrupted", "ended"]
    assert "process ended" in attempts[0]["error"]
    with pytest.raises(UsageError, match="already finished"):
        journal.resume_state("run-k")
    with pytest.raises(UsageError, match="no run"):
        journal.resume_state("nope")


def test_a_resumed_process_files_leftover_commits_under_the_latest_attempt(repo: Path) -> None:
    bus = Bus("run-a", [Journal.open(repo)])
    started(bus)
    iteration(bus, 1, end=False)  # killed
    for attempt in (1, 2):
        journal = Journal.open(repo)  # a new process: it knows no attempts
        bus = Bus("run-a", [journal])
        started(bus)
        bus.iteration = 1
        bus.emit("commit", sha=f"leftover-{attempt}", files=["a.py"], message="interrupted")
        if attempt == 1:
            bus.emit("iteration_started", max_iterations=3)  # attempt 2, killed too
    iteration(bus, 1)  # attempt 3 runs through
    rows = journal.conn.execute(
        "SELECT attempt, outcome, commit_sha FROM iterations ORDER BY attempt"
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        (1, "interrupted", "leftover-1"),
        (2, "interrupted", "leftover-2"),
        (3, "ended", f"{1:040d}"),
    ]


def test_a_run_ended_by_an_error_leaves_no_iteration_without_an_outcome(repo: Path) -> None:
    journal = Journal.open(repo)
    bus = Bus("run-e", [journal])
    started(bus)
    iteration(bus, 1)
    iteration(bus, 2, end=False)  # git fails while the iteration is committing
    bus.iteration = None
    bus.emit("run_ended", status="error", exit_code=1, reason="git commit failed", usage={})
    run = journal.get_run("run-e")
    assert run is not None and (run["status"], run["exit_code"]) == ("error", 1)
    second = run["iterations_detail"][1]
    assert (second["outcome"], second["error"]) == ("error", "git commit failed")
    state = journal.resume_state("run-e")  # resumable, and iteration 2 runs again
    assert (state.status, state.last_iteration) == ("error", 1)


def test_elapsed_time_adds_up_across_processes(repo: Path) -> None:
    journal = Journal.open(repo)

    def at(ts: float, name: str, iteration: int | None = None, **data: Any) -> None:
        journal.handle(Event(name, "run-t", iteration, data, ts=ts))

    at(1000.0, "run_started", config={})
    at(1001.0, "iteration_started", 1)
    at(1060.0, "model_call", 1, usage=USAGE, cost_usd=None)  # killed after this
    at(5000.0, "run_started", config={})  # resumed much later: the gap does not count
    at(5030.0, "iteration_started", 1)
    assert journal.resume_state("run-t").elapsed_s == pytest.approx(90.0)
    assert journal.resume_state("run-t").cost_usd is None  # a call of unknown price
    at(5040.0, "run_ended", status="interrupted", exit_code=130)
    assert journal.resume_state("run-t").elapsed_s == pytest.approx(100.0)


def test_resume_state_carries_the_gate_rejection(repo: Path) -> None:
    journal = Journal.open(repo)
    bus = Bus("run-g", [journal])
    started(bus)
    iteration(bus, 1)
    bus.emit("promise_seen", token="OTHER", accepted=False, reasons=["not the promise"])
    bus.emit("promise_seen", token="DONE", accepted=False, reasons=["pytest failed"])
    assert journal.resume_state("run-g").rejected == ["pytest failed"]


def test_run_ids_resolve_by_unique_prefix(repo: Path) -> None:
    journal = Journal.open(repo)
    for run_id in ("20250101-000000-aaaa", "20250101-000000-abbb", "20250102-000000-cccc"):
        started(Bus(run_id, [journal]))
    assert journal.resolve("20250102") == "20250102-000000-cccc"
    assert journal.resolve("20250101-000000-ab") == "20250101-000000-abbb"
    assert journal.resolve("2026") is None
    with pytest.raises(UsageError, match="ambiguous"):
        journal.resolve("20250101")
    assert journal.resolve("%") is None and journal.resolve("_") is None


def test_runs_and_show_print_text_and_json(repo: Path) -> None:
    out = io.StringIO()
    runs_command(repo, False, out)
    assert out.getvalue() == "no runs yet\n"
    assert not db_path(repo).exists()  # listing creates nothing
    out = io.StringIO()
    runs_command(repo, True, out)
    assert json.loads(out.getvalue()) == []

    journal = Journal.open(repo)
    bus = Bus("20250101-000000-aaaa", [journal])
    started(bus)
    iteration(bus, 1)
    ended(bus, "max_iterations", 3, 1)
    live = acquire_run_lock(repo, "20250102-000000-bbbb")  # its process is alive: running
    bus = Bus("20250102-000000-bbbb", [journal])
    started(bus)
    iteration(bus, 1, end=False)
    journal.close()

    out = io.StringIO()
    runs_command(repo / "sub" / "dir", True, out)  # from anywhere inside the repository
    runs = json.loads(out.getvalue())
    assert [r["id"] for r in runs] == ["20250102-000000-bbbb", "20250101-000000-aaaa"]
    assert runs[1]["status"] == "max_iterations" and runs[1]["iterations"] == 1
    assert runs[1]["cost_usd"] == pytest.approx(0.01)
    out = io.StringIO()
    runs_command(repo, False, out)
    header, first, second = out.getvalue().splitlines()
    assert header.split() == ["ID", "PROMPT", "STARTED", "(UTC)", "STATUS", "ITERATIONS", "COST"]
    assert first.startswith("20250102-000000-bbbb") and "running" in first
    assert "max_iterations" in second and "$0.0100" in second

    out = io.StringIO()
    show_command(repo, "20250101", False, out)
    text = out.getvalue()
    assert "status    max_iterations (exit 3): max_iterations reason" in text
    assert "did part 1" in text and "resume" not in text
    out = io.StringIO()
    show_command(repo, "20250102", True, out)
    shown = json.loads(out.getvalue())
    assert shown["id"] == "20250102-000000-bbbb"
    assert shown["iterations_detail"][0]["outcome"] == "running"
    assert shown["status"] == "running" and shown["reason"] is None
    assert "ralph resume 20250102-000000-bbbb" in format_run(shown)
    with pytest.raises(UsageError, match="no run 'zzz'"):
        show_command(repo, "zzz", False, io.StringIO())

    # Its process dies without ending the run (SIGKILL): nobody holds the lock, so it crashed.
    live.release()
    out = io.StringIO()
    runs_command(repo, False, out)
    assert "crashed" in out.getvalue().splitlines()[1]
    out = io.StringIO()
    show_command(repo, "20250102", True, out)
    shown = json.loads(out.getvalue())
    assert shown["status"] == "crashed" and "died" in shown["reason"]
    out = io.StringIO()
    show_command(repo, "20250102", False, out)
    assert "status    crashed: the process died" in out.getvalue()
    assert "resume    ralph resume 20250102-000000-bbbb" in out.getvalue()
    journal = Journal.open(repo)
    assert journal.resume_state("20250102").status == "running"  # resumable, nothing written
    journal.close()


# --- locks and kills ----------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
from ralph.store.locks import acquire_run_lock
lock = acquire_run_lock(Path(sys.argv[1]), "run-l")
print("locked", flush=True)
time.sleep(60)
"""


def test_a_run_lock_excludes_others_until_its_holder_dies(repo: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(repo)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=f"run run-l is already running \\(pid {holder.pid} "):
            acquire_run_lock(repo, "run-l")
        path = run_lock_path(repo, "run-l")
        assert lock_holder(path) == f"pid {holder.pid} on {socket.gethostname()}"
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(path) is None  # a dead process holds nothing; probing takes nothing
    assert lock_holder(repo / "never" / "lock") is None and not (repo / "never").exists()
    lock = acquire_run_lock(repo, "run-l")  # a dead process holds nothing
    with pytest.raises(UsageError, match="already running"):
        acquire_run_lock(repo, "run-l")  # one holder at a time, in one process too
    lock.release()
    with acquire_run_lock(repo, "run-l"):
        pass
    with pytest.raises(UsageError, match="not a run id"):
        acquire_run_lock(repo, "../escape")


WRITE_FOREVER = """
import sys
from pathlib import Path
from ralph.events import Bus
from ralph.store.journal import Journal
journal = Journal.open(Path(sys.argv[1]))
bus = Bus("run-w", [journal])
bus.emit("run_started", prompt="p", prompt_name="p", model="m", config={"x": "y" * 500})
i = 0
while True:
    i += 1
    bus.iteration = i
    bus.emit("iteration_started", max_iterations=0)
    for turn in range(3):
        bus.emit("model_call", turn=turn, model="m", stop_reason="tool_use",
                 usage={"input_tokens": 10, "output_tokens": 1}, cost_usd=0.001)
        bus.emit("tool_finished", tool="bash", input={"command": "x"}, is_error=False,
                 exit_code=0, duration_s=0.0, output="o" * 3000)
    bus.emit("iteration_ended", outcome="ended", summary="s", usage={}, files_changed=[])
    if i == 5:
        print("writing", flush=True)
"""


def test_a_kill_at_any_instant_leaves_a_consistent_store(repo: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITE_FOREVER, str(repo)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert os.path.exists(str(db_path(repo)) + "-wal")  # killed: nothing was checkpointed

    journal = Journal.open(repo)
    assert journal.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    counts = journal.conn.execute(
        "SELECT (SELECT COUNT(*) FROM model_calls), (SELECT input_tokens FROM runs)"
    ).fetchone()
    assert counts[0] >= 15 and counts[1] == 10 * counts[0]  # totals match the calls exactly
    state = journal.resume_state("run-w")
    last = journal.conn.execute("SELECT MAX(number) FROM iterations").fetchone()[0]
    assert state.last_iteration in (last, last - 1)


def test_an_event_cut_off_by_a_signal_is_absent_and_the_next_one_is_written(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ralph.errors import Interrupted

    journal = Journal.open(repo)
    bus = Bus("run-i", [journal])
    started(bus)
    real = Journal._on_model_call

    def cut(self: Journal, db: sqlite3.Connection, e: Event, d: dict[str, Any]) -> None:
        real(self, db, e, d)  # the call row is written, the totals too...
        raise Interrupted(signal.SIGINT)  # ...then the signal arrives mid-transaction

    monkeypatch.setattr(Journal, "_on_model_call", cut)
    with pytest.raises(Interrupted):
        iteration(bus, 1, end=False)
    monkeypatch.setattr(Journal, "_on_model_call", real)
    iteration(bus, 1)
    row = journal.conn.execute(
        "SELECT (SELECT COUNT(*) FROM model_calls), input_tokens FROM runs"
    ).fetchone()
    assert tuple(row) == (1, 100)  # the cut event left no half


def test_a_run_that_ends_while_runs_reads_it_is_never_shown_crashed(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's own process: it holds its lock and the journal says running.
    lock = acquire_run_lock(repo, "run-e")
    writer = Journal.open(repo)
    bus = Bus("run-e", [writer])
    started(bus)
    iteration(bus, 1)
    real_probe = queries.lock_holder

    def run_ends_before_the_probe(path: Path) -> str | None:
        # `ralph runs` has read the row (running); the run ends now, in the order a run does:
        # run_ended recorded, then its lock released. Then the probe finds the lock free.
        if lock._fd is not None:
            ended(bus, "completed", 0, 1)
            lock.release()
        return real_probe(path)

    monkeypatch.setattr(queries, "lock_holder", run_ends_before_the_probe)
    reader = Journal.open(repo, create=False)
    [run] = reader.list_runs()
    assert (run["status"], run["exit_code"], run["reason"]) == ("completed", 0, "completed reason")
    monkeypatch.setattr(queries, "lock_holder", real_probe)
    assert reader.list_runs()[0]["status"] == "completed"


def test_state_that_cannot_be_created_is_one_usage_error(repo: Path) -> None:
    (repo / ".ralph").write_text("a file where ralph's state directory goes\n")
    for make in (
        lambda: acquire_run_lock(repo, "run-x"),
        lambda: Journal.open(repo),
    ):
        with pytest.raises(UsageError) as raised:
            make()
        message = raised.value.message
        assert "cannot create" in message and "writable directory" in message, message
        assert "\n" not in message


def test_a_journal_on_a_read_only_mount_is_one_usage_error(
    requires_bwrap: None, repo: Path
) -> None:
    journal = Journal.open(repo)
    started(Bus("run-ro", [journal]))
    journal.close()
    ralph = Path(sys.executable).parent / "ralph"
    read_only = ["bwrap", "--bind", "/", "/", "--ro-bind", str(repo), str(repo)]
    read_only += ["--dev", "/dev", "--proc", "/proc"]
    for command in (["runs"], ["resume", "run-ro"]):
        proc = subprocess.run(
            [*read_only, str(ralph), *command, "--repo", str(repo)], capture_output=True, text=True
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not writable" in lines[0], proc.stderr

"""JSON lines: every event a parseable record with the stable envelope; everything on stderr
is JSON in json mode (usage errors, warnings, library logs, tracebacks); --log-file."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ralph.events import Event
from ralph.views.logs import OUTPUT_KEEP, TEXT_KEEP, JsonLines, iso_ts, json_mode_requested
from tests.helpers import clean_env, make_repo, run_cli, write_script
from tests.test_ui import LONG, RUN_ID, recorded_events

ENVELOPE = ["ts", "level", "event", "run_id", "iteration"]


def _records(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "no output"
    return [json.loads(line) for line in lines]  # every line parses, or this raises


def test_iso_timestamps_are_utc_with_milliseconds() -> None:
    assert iso_ts(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ts(1735732800.1234) == "2025-01-01T12:00:00.123Z"


def test_every_event_is_one_json_record_with_the_envelope() -> None:
    out = io.StringIO()
    logger = JsonLines(out)
    events = recorded_events()
    for event in events:
        logger.handle(event)
    records = _records(out.getvalue())
    for rec in records:
        assert list(rec)[:5] == ENVELOPE
        assert rec["run_id"] == RUN_ID
        assert rec["ts"].endswith("Z") and rec["level"] in {"debug", "info", "warning", "error"}
    names = [r["event"] for r in records]
    # model_text deltas are aggregated: one record per model call that streamed text.
    assert names.count("model_text") == 3
    assert len(records) == len([e for e in events if e.name != "model_text"]) + 3
    first_text = next(r for r in records if r["event"] == "model_text")
    assert first_text["text"].startswith("I will run the tests.\nThen fix the login handler.")
    assert first_text["chars"] == len("I will run the tests.\nThen fix the login handler. " + LONG)
    assert first_text["turn"] == 1 and first_text["iteration"] == 1
    call = next(r for r in records if r["event"] == "model_call")
    assert call["usage"]["cache_read_input_tokens"] == 9000 and call["latency_s"] == 2.5
    tool = next(r for r in records if r["event"] == "tool_finished")
    assert tool["exit_code"] == 1 and tool["duration_s"] == 3.2 and tool["is_error"] is False
    assert tool["output_chars"] == len(tool["output"])
    started = next(r for r in records if r["event"] == "run_started")
    assert "prompt" not in started["config"] and started["iteration"] is None
    ended = records[-1]
    assert ended["event"] == "run_ended" and ended["status"] == "completed"


def test_long_fields_are_clipped_unless_asked_for() -> None:
    big = "y" * (OUTPUT_KEEP * 3)
    event = Event(
        "tool_finished",
        RUN_ID,
        1,
        {"tool": "bash", "input": {"command": "cat big"}, "output": big, "is_error": False},
    )
    text_events = [
        Event("model_started", RUN_ID, 1, {"turn": 1}),
        Event("model_text", RUN_ID, 1, {"text": "z" * (TEXT_KEEP * 2)}),
        Event("model_call", RUN_ID, 1, {"turn": 1}),
    ]
    out = io.StringIO()
    logger = JsonLines(out)
    for e in [event, *text_events]:
        logger.handle(e)
    clipped, _, text, _ = _records(out.getvalue())
    assert len(clipped["output"]) < OUTPUT_KEEP + 100 and clipped["output_chars"] == len(big)
    assert "characters cut" in clipped["output"]
    assert len(text["text"]) < TEXT_KEEP + 100 and text["chars"] == TEXT_KEEP * 2
    out = io.StringIO()
    logger = JsonLines(out, verbose=True, show_text=True)
    for e in [event, *text_events]:
        logger.handle(e)
    full, _, text, _ = _records(out.getvalue())
    assert full["output"] == big and text["text"] == "z" * (TEXT_KEEP * 2)


def test_records_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_API_KEY", "value-of-the-service-key")
    out = io.StringIO()
    JsonLines(out).handle(
        Event(
            "tool_finished",
            RUN_ID,
            1,
            {"tool": "bash", "input": {"command": "env"}, "output": "KEY=value-of-the-service-key"},
        )
    )
    assert "value-of-the-service-key" not in out.getvalue()
    assert _records(out.getvalue())[0]["output"] == "KEY=[REDACTED]"


def test_an_event_field_never_overrides_the_envelope() -> None:
    out = io.StringIO()
    JsonLines(out).handle(Event("warning", RUN_ID, 2, {"message": "m", "level": "x", "event": "y"}))
    rec = _records(out.getvalue())[0]
    assert rec["event"] == "warning" and rec["level"] == "info" and rec["iteration"] == 2
    assert rec["data_level"] == "x" and rec["data_event"] == "y"


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["x.md", "--log-format", "json"], {}, True),
        (["x.md", "--log-format=JSON"], {}, True),
        (["x.md", "--log-format", "plain"], {"RALPH_LOG_FORMAT": "json"}, False),
        (["x.md"], {"RALPH_LOG_FORMAT": "json"}, True),
        (["x.md", "--", "--log-format", "json"], {}, False),
        (["x.md"], {}, False),
    ],
)
def test_json_mode_is_seen_before_parsing(
    argv: list[str], env: dict[str, str], expected: bool
) -> None:
    assert json_mode_requested(argv, env) is expected


def test_log_file_cannot_be_written_is_a_clear_usage_error(tmp_path: Path) -> None:
    from ralph.errors import UsageError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match=r"cannot write --log-file .*choose a writable path"):
        JsonLines.to_file(blocker / "log.jsonl")


# --- json mode: everything on stderr ----------------------------------------------------------

CHATTY = """
import logging, sys, warnings
from ralph.views.logs import install_json_stderr
install_json_stderr()
warnings.simplefilter("always")
warnings.warn("old API", DeprecationWarning)
logging.getLogger("httpx").warning("connection reset by %s", "peer")
logging.getLogger("httpx").info("not shown: below WARNING")
import threading
t = threading.Thread(target=lambda: 1 / 0)
t.start(); t.join()
raise RuntimeError("boom with secret-value-12345")
"""


def test_warnings_logs_and_tracebacks_are_json_in_json_mode() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHATTY],
        capture_output=True,
        text=True,
        env=clean_env(RUNNER_TOKEN="secret-value-12345"),
        check=False,
    )
    assert proc.returncode == 1
    records = _records(proc.stderr)
    assert [r["event"] for r in records] == ["warning", "log", "exception", "exception"]
    warning, log, thread_error, crash = records
    assert warning["message"] == "old API" and warning["category"] == "DeprecationWarning"
    assert warning["source"].startswith("<string>:")
    assert log["logger"] == "httpx" and log["message"] == "connection reset by peer"
    assert thread_error["type"] == "ZeroDivisionError"
    assert crash["type"] == "RuntimeError" and crash["level"] == "critical"
    assert "Traceback (most recent call last)" in crash["traceback"]
    assert "secret-value-12345" not in proc.stderr and "[REDACTED]" in crash["message"]
    assert all("run_id" in r for r in records)


def _project(tmp_path: Path, iterations: list[Any]) -> tuple[Path, Path, Path]:
    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "task.md"
    prompt.write_text("Harden it. Output <promise>DONE</promise> when done.\n")
    return repo, prompt, write_script(tmp_path / "s.yaml", iterations)


WORK = {
    "text": "Looking.\nRunning the tests.",
    "tools": [{"bash": {"command": "echo hi > a.txt; ls"}}],
}


def test_a_json_run_writes_only_json_lines_on_stderr(tmp_path: Path) -> None:
    repo, prompt, script = _project(
        tmp_path, [[WORK, "Step done."], [WORK, "Done. <promise>DONE</promise>"]]
    )
    proc = run_cli(
        [str(prompt), "--model", f"script:{script}", "--repo", str(repo), "--sandbox", "none",
         "--log-format", "json", "--max-iterations", "3"],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = _records(proc.stderr)
    run_id = records[0]["run_id"]
    assert run_id and all(r["run_id"] == run_id for r in records)
    names = [r["event"] for r in records]
    assert names[0] == "run_started" and names[-1] == "run_ended"
    for name in ("iteration_started", "model_call", "tool_finished", "promise_seen", "commit"):
        assert name in names
    assert names.count("iteration_ended") == 2
    assert {r["iteration"] for r in records if r["event"] == "tool_finished"} == {1, 2}
    # Only events README "Structured logs" documents: the journal's whole `conversation` of
    # an iteration (tool output unclipped) is not logged.
    assert set(names) <= set(_readme_events()), set(names) - set(_readme_events())
    # The summary table is on stdout, not mixed into the JSON on stderr.
    assert "ralph run " + run_id in proc.stdout


def test_a_usage_error_in_json_mode_is_a_json_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    proc = run_cli(["--log-format", "json", "--repo", str(repo)], cwd=repo)
    assert proc.returncode == 2
    (rec,) = _records(proc.stderr)
    assert rec["event"] == "error" and rec["level"] == "error" and rec["run_id"] is None
    assert rec["message"].startswith("missing PROMPT") and rec["exit_code"] == 2
    prompt = tmp_path / "task.md"
    prompt.write_text("Harden it. Output <promise>DONE</promise> when done.\n")
    proc = run_cli([str(prompt), "--max-iterations", "-1", "--repo", str(repo)], cwd=repo,
                   env=clean_env(RALPH_LOG_FORMAT="json"))  # fmt: skip
    assert proc.returncode == 2
    (rec,) = _records(proc.stderr)
    assert rec["event"] == "error" and "max-iterations" in rec["message"]


RUN_APP = """
import sys
from ralph.cli import app
from ralph.views.logs import run_app
sys.argv = ["ralph", "run", "--no-such-option", "--log-format", "json"]
run_app(app, "ralph")
"""


def test_command_line_errors_are_json_through_run_app() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_APP],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert proc.returncode == 2
    (rec,) = _records(proc.stderr)
    assert rec["event"] == "error" and "--no-such-option" in rec["message"]


def test_log_file_gets_json_lines_while_the_screen_gets_plain_lines(tmp_path: Path) -> None:
    repo, prompt, script = _project(tmp_path, [[WORK, "Done. <promise>DONE</promise>"]])
    log = tmp_path / "logs" / "run.jsonl"
    proc = run_cli(
        [str(prompt), "--model", f"script:{script}", "--repo", str(repo), "--sandbox", "none",
         "--log-file", str(log)],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr.lstrip().startswith("{")
    records = _records(log.read_text())
    assert records[0]["event"] == "run_started" and records[-1]["event"] == "run_ended"
    assert all(r["run_id"] == records[0]["run_id"] for r in records)


def test_a_second_signal_in_json_mode_is_a_json_line_and_show_rebuilds_the_report(
    tmp_path: Path,
) -> None:
    import contextlib
    import os
    import signal

    from tests.helpers import ralph_loop_with_grace, wait_for

    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n", "ralph.yaml": "log_format: json\n"})
    prompt = tmp_path / "task.md"
    prompt.write_text("Harden it. Output <promise>DONE</promise> when done.\n")
    pidfile, termed = tmp_path / "pid", tmp_path / "termed"
    # The command outlives SIGTERM (noting it in `termed`, with no process to start), so the first SIGINT's clean stop
    # takes a grace period (made long: with the usual 1 s, a loaded machine could let it end
    # first); the second SIGINT is sent once the TERM came, during that period: ralph exits at
    # once, with no report.md.
    command = (
        f"trap ': > {termed}' TERM; echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; "
        "while :; do sleep 1; done"
    )
    script = write_script(
        tmp_path / "s.yaml",
        [[{"text": "Working.", "tools": [{"bash": {"command": command}}]}, "Done."]],
    )
    proc = subprocess.Popen(
        [*ralph_loop_with_grace(), str(prompt), "--model", f"script:{script}", "--sandbox", "none"],
        cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pgid = 0
    try:
        wait_for(lambda: pidfile.exists() or proc.poll() is not None, "the command to start")
        assert proc.poll() is None, proc.communicate()
        pgid = int(pidfile.read_text())
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: termed.exists() or proc.poll() is not None, "the command's SIGTERM")
        assert proc.poll() is None, "ralph stopped before the second signal could be sent"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    assert proc.returncode == 130, err
    records = _records(err)  # every line JSON, the last one included
    last = records[-1]
    assert last["event"] == "signal" and last["signal"] == "SIGINT" and last["exit_code"] == 130
    assert "second signal" in last["message"] and last["run_id"] == records[0]["run_id"]
    run_id = records[0]["run_id"]
    assert not (repo / ".ralph" / "runs" / run_id / "report.md").exists()
    shown = run_cli(["show", run_id, "--report"], cwd=repo, command="ralph")
    assert shown.returncode == 0, shown.stderr
    assert "rebuilt from the journal" in shown.stdout and f"ralph resume {run_id}" in shown.stdout


@pytest.mark.parametrize("where", ["ralph.yaml", "front matter"])
def test_log_format_json_in_the_settings_makes_a_usage_error_json(
    tmp_path: Path, where: str
) -> None:
    files = {"README.md": "# p\n"}
    front = ""
    if where == "ralph.yaml":
        files["ralph.yaml"] = "log_format: json\n"
    else:
        front = "---\nlog_format: json\n---\n"
    repo = make_repo(tmp_path / "repo", files)
    prompt = tmp_path / "task.md"
    prompt.write_text(f"{front}Harden it. Output <promise>DONE</promise> when done.\n")
    proc = run_cli([str(prompt), "--max-iterations", "0", "--repo", str(repo)], cwd=repo)
    assert proc.returncode == 2
    (rec,) = _records(proc.stderr)
    assert rec["event"] == "error" and rec["exit_code"] == 2
    assert "max-iterations" in rec["message"]
    # A flag still beats the file: --log-format plain gives the plain one-line error.
    proc = run_cli(
        [str(prompt), "--max-iterations", "0", "--repo", str(repo), "--log-format", "plain"],
        cwd=repo,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("ralph-loop: error: ")


def _fields(text: str) -> set[str]:
    """Field names of a documented field list: `usage{...}` is `usage`, notes dropped."""
    text = re.sub(r"\{[^}]*\}|\([^)]*\)", "", text)
    return {f.strip() for f in text.split(",") if f.strip()}


def _readme_events() -> dict[str, set[str]]:
    """README "Structured logs": each event's documented fields."""
    root = Path(__file__).resolve().parents[1]
    readme: dict[str, set[str]] = {}
    for row in re.findall(
        r"^\| (\w+)(?: \(\w+\))? \| (.+) \|$", (root / "README.md").read_text(), re.M
    ):
        readme[row[0]] = _fields(row[1].split(" — ")[0])
    return readme


def test_every_declared_event_and_field_is_in_readmes_table() -> None:
    # README's rows are generated from events.EVENTS, where a row's text may be written out
    # (with notes): it must still name every field the event carries.
    from ralph.events import EVENTS

    readme = _readme_events()
    assert len(EVENTS) >= 25
    for name, spec in EVENTS.items():
        if name == "conversation":  # the journal's; JSON logs leave it out
            continue
        assert name in readme, name
        assert set(spec.fields) <= readme[name], (name, set(spec.fields) - readme[name])

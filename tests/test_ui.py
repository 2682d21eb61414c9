"""Seeing a run on screen: plain lines, the rich live view, and which observers a run gets."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.events import Bus, Event, Recorder
from ralph.text import clean, fmt_duration, short, tool_label
from ralph.views.live import RECENT_TOOLS, LiveView
from ralph.views.logs import JsonLines
from ralph.views.plain import PlainLines
from ralph.views.ui import make_observers
from tests.helpers import interrupt_in_iteration, make_repo, run_cli, write_script

RUN_ID = "20250101-120000-ab12"
LONG = "x" * 500
ANSI_OUTPUT = "\x1b[31mFAILED\x1b[0m tests/test_app.py::test_login\r\n" + "line\n" * 300
USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 9000,
}


def recorded_events() -> list[Event]:
    """A realistic run's event stream: two iterations, a retry, a failing test run, a model
    error, long and escape-ridden output, a rejected then an accepted promise."""
    rec = Recorder()
    bus = Bus(RUN_ID, [rec])
    bus.emit(
        "run_started",
        prompt="security",
        prompt_name="security",
        model="claude-sonnet-5-5",
        max_iterations=10,
        repo="/tmp/repo",
        root="/tmp/repo",
        branch="ralph/security-20250101-120000",
        base_commit="a" * 40,
        worktree=False,
        resumed_at=None,
        config={"model": "claude-sonnet-5-5", "max_output_tokens": 16000, "prompt": "long"},
    )
    bus.emit("warning", level="warning", message="bubblewrap is not available; running unsandboxed")
    for i in (1, 2):
        bus.iteration = i
        bus.emit("iteration_started", max_iterations=10)
        bus.emit("model_started", turn=1)
        bus.emit("model_retry", level="warning", wait_s=30.0, reason="overloaded (529)")
        for delta in ("I will run the tests.\n", "Then fix ", "the login handler. " + LONG):
            bus.emit("model_text", text=delta)
        bus.emit(
            "model_call",
            turn=1,
            model="claude-sonnet-5-5-20260101",
            stop_reason="tool_use",
            usage=USAGE,
            cost_usd=0.0123,
            latency_s=2.5,
            retries=1,
            request_id="req_1",
        )
        for n, (cmd, code) in enumerate([("pytest -q", 1), (f"echo {LONG}", 0)], 1):
            use_id = f"toolu_{i}_{n}"
            bus.emit("tool_started", tool_use_id=use_id, tool="bash", input={"command": cmd})
            bus.emit(
                "tool_finished",
                tool_use_id=use_id,
                tool="bash",
                input={"command": cmd},
                is_error=False,  # as the bash tool reports it: the tool worked, the command failed
                exit_code=code,
                duration_s=3.2,
                output=ANSI_OUTPUT if code else LONG,
            )
        edit = {"command": "create", "path": "sdlc/security-audit.md", "file_text": LONG}
        bus.emit(
            "tool_started",
            tool_use_id=f"toolu_{i}_3",
            tool="str_replace_based_edit_tool",
            input=edit,
        )
        bus.emit(
            "tool_finished",
            tool_use_id=f"toolu_{i}_3",
            tool="str_replace_based_edit_tool",
            input=edit,
            is_error=False,
            exit_code=None,
            duration_s=0.01,
            output="File created",
        )
        if i == 1:
            bus.emit("model_started", turn=2)
            bus.emit(
                "model_error",
                level="error",
                message="API error 500 after retries",
                status=500,
                fatal=False,
            )
        else:
            bus.emit("model_started", turn=2)
            bus.emit("model_text", text="All done.\n<promise>HARDENED</promise>")
            bus.emit(
                "model_call",
                turn=2,
                model="claude-sonnet-5-5-20260101",
                stop_reason="end_turn",
                usage=USAGE,
                cost_usd=0.01,
                latency_s=1.0,
                retries=0,
                request_id="req_2",
            )
        accepted = i == 2
        bus.emit(
            "promise_seen",
            token="HARDENED",
            accepted=accepted,
            reasons=[] if accepted else ["sdlc/security-audit.md: 3 unchecked item(s) | more"],
            level="info" if accepted else "warning",
        )
        bus.emit("commit", sha=f"{i}" * 40, files=["app.py", "sdlc/security-audit.md"], message="m")
        bus.emit(
            "iteration_ended",
            outcome="failed" if i == 1 else "ended",
            summary=f"Iteration {i}: fixed the login handler | and more " + LONG,
            final_text=None if i == 1 else "All done.\n<promise>HARDENED</promise>",
            promise=accepted,
            files_changed=["app.py", "sdlc/security-audit.md"],
            commit=f"{i}" * 40,
            usage={k: v * 2 for k, v in USAGE.items()},
            cost_usd=0.0246,
            duration_s=65.0,
            turns=2,
            error="API error 500 after retries" if i == 1 else None,
        )
    bus.iteration = None
    bus.emit("guard_tripped", level="warning", guard="stall", message="no progress in 2 iterations")
    bus.emit(
        "run_ended",
        status="completed",
        exit_code=0,
        reason="promise HARDENED accepted",
        iterations=2,
        usage={k: v * 4 for k, v in USAGE.items()},
        cost_usd=0.0492,
        duration_s=130.0,
        resume=None,
    )
    return rec.events


# --- helpers ---------------------------------------------------------------------------------


def test_clean_strips_escapes_and_controls() -> None:
    assert clean("\x1b[31mred\x1b[0m\tok\r\nnext\x07\x1b]0;title\x07") == "red\tok\nnext"


def test_short_and_labels() -> None:
    assert short("a\n  b", 80) == "a b"
    assert short("abcdef", 4) == "abc…"
    assert tool_label("bash", {"command": "pytest -q\n--x"}) == "bash: pytest -q --x"
    assert tool_label("str_replace_based_edit_tool", {"command": "view", "path": "a.py"}) == (
        "edit: view a.py"
    )
    assert fmt_duration(4.25) == "4.2s"
    assert fmt_duration(125) == "2m05s"
    assert fmt_duration(3720) == "1h02m"


# --- plain lines -----------------------------------------------------------------------------


def test_plain_lines_are_timestamped_and_free_of_control_codes() -> None:
    out = io.StringIO()
    view = PlainLines(out)
    for event in recorded_events():
        view.handle(event)
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    assert f"run {RUN_ID}: security with claude-sonnet-5-5" in lines[0]
    assert any("[1] bash: pytest -q -> exit 1 in 3.2s" in line for line in lines)
    assert any("retrying in 30.0s" in line for line in lines)
    assert any("promise HARDENED rejected: sdlc/security-audit.md" in line for line in lines)
    assert any("[2] promise HARDENED accepted" in line for line in lines)
    assert any("model turn 1: tool_use · 1.2k in / 300 out / 9.0k cached" in line for line in lines)
    assert "run completed after 2 iteration(s)" in lines[-1]
    assert "FAILED tests/" not in text  # tool output only with -v


def test_plain_lines_verbose_shows_cleaned_tool_output_and_show_text_the_full_text() -> None:
    out = io.StringIO()
    view = PlainLines(out, verbose=True, show_text=True)
    for event in recorded_events():
        view.handle(event)
    text = out.getvalue()
    assert "FAILED tests/test_app.py::test_login" in text
    assert "\x1b" not in text
    assert "Then fix the login handler. " + LONG in text


def test_plain_lines_redact_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "s3cr3t-deploy-value")
    out = io.StringIO()
    view = PlainLines(out)
    view.handle(Event("warning", RUN_ID, 1, {"message": "token s3cr3t-deploy-value leaked"}))
    assert "s3cr3t" not in out.getvalue() and "[REDACTED]" in out.getvalue()


# --- the live view ---------------------------------------------------------------------------


def _console(width: int, out: io.StringIO | None = None) -> Any:
    from rich.console import Console

    return Console(file=out or io.StringIO(), width=width, height=40, force_terminal=True)


def _panel_lines(view: LiveView, width: int) -> list[str]:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(view.render())
    return buf.getvalue().splitlines()


@pytest.mark.parametrize("width", [40, 80, 200])
def test_live_view_renders_a_recorded_run_at_any_width(width: int) -> None:
    screen = io.StringIO()
    events = recorded_events()
    view = LiveView(
        _console(width, screen), verbose=True, show_text=True, max_cost=5.0, auto_refresh=False
    )
    for event in events:
        view.handle(event)
        lines = _panel_lines(view, width)
        # Never wider than the terminal, never wrapped: the panel is a fixed set of rows.
        assert all(len(line) <= width for line in lines), (width, lines)
        assert len(lines) == 2 + 6 + len(view.state.recent) <= 2 + 6 + RECENT_TOOLS
        assert lines[0].startswith("╭") and lines[-1].startswith("╰")
    raw = screen.getvalue()
    assert "\x1b[31mFAILED" not in raw  # the tool's own colours never reach the terminal
    written = clean(raw)
    assert "iteration 2/10" in written  # the history printed above the panel
    assert "FAILED tests/test_app.py" in written  # -v
    assert "promise HARDENED accepted" in written


def test_live_view_shows_activity_counts_down_retries_and_lists_tools() -> None:
    now = [0.0]
    view = LiveView(
        _console(80),
        max_cost=1.0,
        max_tokens=100_000,
        timeout=3600,
        auto_refresh=False,
        clock=lambda: now[0],
    )
    events = recorded_events()
    base = events[0].ts

    def feed_until(name: str, nth: int = 1) -> Event:
        seen = 0
        while events:
            event = events.pop(0)
            event.ts = base
            view.handle(event)
            if event.name == name:
                seen += 1
                if seen == nth:
                    return event
        raise AssertionError(name)

    feed_until("model_retry")
    now[0] = base + 12
    text = "\n".join(_panel_lines(view, 80))
    assert "retrying in 18s" in text
    assert RUN_ID in text and "security · claude-sonnet-5-5" in text
    feed_until("model_text", 2)
    assert "streaming" in "\n".join(_panel_lines(view, 80))
    assert "streaming (12s): Then fix" in "\n".join(_panel_lines(view, 80))
    feed_until("tool_started")
    now[0] = base + 7
    text = "\n".join(_panel_lines(view, 80))
    assert "bash: pytest -q (7.0s)" in text
    feed_until("tool_finished")
    text = "\n".join(_panel_lines(view, 80))
    assert "✗ bash: pytest -q · exit 1 · 3.2s" in text
    assert "in 1.2k · out 300 · cached 9.0k" in text
    assert (
        "cost $0.0123/$1.00" in text and "tokens 10.5k/100.0k" in text and "time 7.0s/1h00m" in text
    )


def test_live_view_compact_text_is_not_printed_in_full() -> None:
    screen = io.StringIO()
    view = LiveView(_console(100, screen), auto_refresh=False)
    for event in recorded_events():
        view.handle(event)
    assert LONG not in screen.getvalue()  # neither the text nor the tool output


def test_live_view_redacts_what_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "s3cr3t-deploy-value")
    screen = io.StringIO()
    view = LiveView(_console(100, screen), verbose=True, auto_refresh=False)
    events = recorded_events()
    view.handle(events[0])
    view.handle(Event("model_started", RUN_ID, 1, {"turn": 1}))
    view.handle(Event("model_text", RUN_ID, 1, {"text": "the token is s3cr3t-deploy-value"}))
    assert "the token is [REDACTED]" in "\n".join(_panel_lines(view, 100))
    cmd = {"command": "echo s3cr3t-deploy-value"}
    view.handle(
        Event("tool_started", RUN_ID, 1, {"tool_use_id": "t", "tool": "bash", "input": cmd})
    )
    assert "echo [REDACTED]" in "\n".join(_panel_lines(view, 100))
    done = {"tool_use_id": "t", "tool": "bash", "input": cmd, "output": "s3cr3t-deploy-value"}
    view.handle(Event("tool_finished", RUN_ID, 1, done))
    view.close()
    assert "s3cr3t" not in screen.getvalue() + "\n".join(_panel_lines(view, 100))


def test_live_view_ticks_with_its_refresh_thread() -> None:
    screen = io.StringIO()
    view = LiveView(_console(80, screen))
    events = recorded_events()
    for event in events[:3]:
        view.handle(event)
    from tests.helpers import wait_for

    # rich refreshes 4 times a second, from its own thread; how soon depends on the load.
    wait_for(lambda: screen.getvalue().count("elapsed") >= 2, "two refreshes")
    view.close()


def test_live_view_falls_back_to_plain_lines_when_rendering_fails() -> None:
    screen = io.StringIO()
    view = LiveView(_console(80, screen), auto_refresh=False)
    view.handle(recorded_events()[0])
    view.handle(Event("iteration_ended", RUN_ID, 1, {"files_changed": 5}))  # a bad event
    view.handle(Event("warning", RUN_ID, 1, {"message": "still here"}))
    assert "live view failed" in screen.getvalue()
    assert "[1] info: still here" in screen.getvalue()


# --- choosing observers ----------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _kinds(cfg: RunConfig, stream: io.StringIO) -> list[str]:
    return [type(o).__name__ for o in make_observers(cfg, stream)]


def test_make_observers_follows_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _kinds(RunConfig(quiet=True), _Tty()) == []
    assert _kinds(RunConfig(), io.StringIO()) == ["PlainLines"]
    assert _kinds(RunConfig(), _Tty()) == ["LiveView"]
    assert _kinds(RunConfig(log_format="plain"), _Tty()) == ["PlainLines"]
    assert _kinds(RunConfig(log_format="rich"), io.StringIO()) == ["LiveView"]
    assert _kinds(RunConfig(log_format="json"), _Tty()) == ["JsonLines"]
    # --quiet drops the plain lines and the live view, never the JSON lines.
    assert _kinds(RunConfig(log_format="json", quiet=True), io.StringIO()) == ["JsonLines"]
    assert _kinds(RunConfig(log_format="plain", quiet=True), io.StringIO()) == []
    monkeypatch.setenv("TERM", "dumb")
    assert _kinds(RunConfig(), _Tty()) == ["PlainLines"]
    log = tmp_path / "logs" / "run.jsonl"
    observers = make_observers(RunConfig(quiet=True, log_file=log), _Tty())
    assert [type(o).__name__ for o in observers] == ["JsonLines"]
    assert isinstance(observers[0], JsonLines) and log.exists()
    observers[0].close()


def test_choosing_observers_imports_neither_rich_nor_opentelemetry_for_plain_runs() -> None:
    code = (
        "import io, sys\n"
        "from ralph.config import RunConfig\n"
        "from ralph.views.ui import make_observers\n"
        "make_observers(RunConfig(log_format='plain'), io.StringIO())\n"
        "make_observers(RunConfig(log_format='json'), io.StringIO())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'opentelemetry'}))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.strip() == "[]"


# --- a real run, not on a terminal -----------------------------------------------------------


def test_a_non_tty_run_writes_no_escape_codes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "task.md"
    prompt.write_text("Harden it. Output <promise>DONE</promise> when done.\n")
    script = write_script(
        tmp_path / "s.yaml",
        [
            [
                {
                    "text": "Running.",
                    "tools": [{"bash": {"command": "printf '\\033[31mred\\033[0m\\n'; exit 3"}}],
                },
                # The agent's final message carries escape codes (a title change, colours).
                "\x1b[31mFixed\x1b[0m the \x1b]0;pwned\x07title.\n<promise>DONE</promise>",
            ]
        ],
    )
    proc = run_cli(
        [
            str(prompt),
            "--model",
            f"script:{script}",
            "--repo",
            str(repo),
            "--sandbox",
            "none",
            "-v",
        ],
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\x1b" not in proc.stdout
    assert "bash: printf" in proc.stderr and "-> exit 3" in proc.stderr
    assert "red" in proc.stderr  # -v: the output, without its colour codes
    assert "run completed after 1 iteration(s)" in proc.stderr
    # Nor the summary table on stdout, nor report.md (the run's summary is the final message).
    assert "Fixed the title." in proc.stdout and "\x07" not in proc.stdout
    (report,) = (repo / ".ralph" / "runs").glob("*/report.md")
    text = report.read_text()
    assert "| 1 | ended | Fixed the title. |" in text
    assert "\x1b" not in text and "\x07" not in text


# --- a resumed run ----------------------------------------------------------------------------


def test_a_resumed_runs_panel_counts_the_earlier_sessions() -> None:
    now = [1000.0]
    view = LiveView(
        _console(100), max_cost=1.0, timeout=3600, auto_refresh=False, clock=lambda: now[0]
    )
    started = recorded_events()[0]
    started.ts = now[0]
    started.data.update(
        resumed_at=3,
        earlier_usage=USAGE,
        earlier_cost_usd=0.25,
        earlier_elapsed_s=600.0,
    )
    view.handle(started)
    text = "\n".join(_panel_lines(view, 100))
    assert "cost $0.2500/$1.00" in text and "time 10m00s/1h00m" in text
    assert "elapsed 10m00s" in text and "in 1.2k · out 300 · cached 9.0k" in text
    view.handle(Event("model_call", RUN_ID, 3, {"usage": USAGE, "cost_usd": 0.05}, ts=now[0]))
    now[0] += 5
    text = "\n".join(_panel_lines(view, 100))
    assert "cost $0.3000/$1.00" in text and "time 10m05s/1h00m" in text
    assert "in 2.4k · out 600 · cached 18.0k" in text
    unknown = LiveView(_console(100), auto_refresh=False)  # an earlier price was unknown
    started.data["earlier_cost_usd"] = None
    unknown.handle(started)
    assert "cost ?" in "\n".join(_panel_lines(unknown, 100))


def test_resuming_reports_the_earlier_sessions_in_run_started(tmp_path: Path) -> None:
    import json

    from tests.helpers import clean_env

    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "task.md"
    prompt.write_text("Harden it. Output <promise>DONE</promise> when done.\n")
    step = {"text": "Step.", "usage": {"input_tokens": 1000, "output_tokens": 100}}
    script = write_script(tmp_path / "s.yaml", [[step], [{"text": "Slow.", "sleep": 30}]])
    log = tmp_path / "run.jsonl"
    args = [str(prompt), "--model", f"script:{script}", "--repo", str(repo), "--sandbox", "none",
            "--log-file", str(log)]  # fmt: skip
    interrupt_in_iteration(args, cwd=repo, env=clean_env())
    write_script(script, [[step], ["Done. <promise>DONE</promise>"]])
    run_id = json.loads(log.read_text().splitlines()[0])["run_id"]
    resumed = run_cli(["resume", run_id], cwd=repo, command="ralph")
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    first, again = [r for r in records if r["event"] == "run_started"]
    assert first["earlier_usage"] is None and first["earlier_elapsed_s"] is None
    interrupted = next(r for r in records if r["event"] == "run_ended")
    assert again["resumed_at"] == 2
    assert again["earlier_usage"] == interrupted["usage"]
    assert again["earlier_usage"]["input_tokens"] == 1000
    assert again["earlier_cost_usd"] == interrupted["cost_usd"]
    assert 0 < again["earlier_elapsed_s"] < 60

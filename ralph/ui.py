"""Showing a run: picks the observers a run's settings ask for; plain timestamped lines.

The live view (ralph/live.py, rich), JSON logs (ralph/logs.py) and traces (ralph/telemetry.py)
are separate modules, imported only when chosen, so a plain run never loads rich or
OpenTelemetry. The small formatting helpers here are shared by all of them and the report.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .config import RunConfig
from .events import Event, Observer

if TYPE_CHECKING:
    from .report import RunSummary

# ANSI escape sequences and other C0/C1 control characters except newline and tab: tool output
# (pytest colours, progress bars with \r) must never reach the terminal raw.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def clean(text: object) -> str:
    """`text` as a string without escape sequences or control characters (keeps \\n and \\t)."""
    return _CONTROL.sub("", str(text).replace("\r\n", "\n"))


def short(text: object, width: int = 80) -> str:
    """One line of at most `width` characters: whitespace collapsed, ellipsized."""
    line = " ".join(clean(text).split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def last_line(text: str) -> str:
    """The last non-empty line of `text` (what a compact view shows of streamed text)."""
    for line in reversed(clean(text).splitlines()):
        if line.strip():
            return line.strip()
    return ""


def fmt_duration(seconds: float | None) -> str:
    """`4s`, `2m05s`, `1h02m`: short wall-clock durations."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = int(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_tokens(count: int | None) -> str:
    """`950`, `12.3k`, `1.20M`."""
    if count is None:
        return "-"
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.2f}M"


def fmt_cost(cost: float | None) -> str:
    """`$0.0123` below a dollar, `$4.20` above; `?` when the price is unknown."""
    if cost is None:
        return "?"
    return f"${cost:.4f}" if cost < 1 else f"${cost:.2f}"


def usage_total(usage: Any) -> int:
    """All billed tokens of a usage dict (input, output, cache writes and reads)."""
    if not isinstance(usage, dict):
        return 0
    return sum(int(v or 0) for v in usage.values() if isinstance(v, int | float))


def tool_label(tool: str, tool_input: Any, width: int = 60) -> str:
    """`bash: pytest -q`, `edit: create notes/a.md`: what a tool call does, on one line."""
    data = tool_input if isinstance(tool_input, dict) else {}
    if tool == "bash":
        if data.get("restart"):
            return "bash: (restart)"
        return "bash: " + short(data.get("command", ""), width)
    if tool == "str_replace_based_edit_tool":
        return short(f"edit: {data.get('command', '?')} {data.get('path', '')}", width + 6)
    return short(f"{tool}: {' '.join(f'{k}={v}' for k, v in data.items())}", width + 6)


def tool_failed(data: dict[str, Any]) -> bool:
    """Whether a tool call failed: the tool reported an error, or its command exited non-zero.

    The bash tool reports a command that ran and failed as `is_error: false` with its exit
    code (the tool worked), so the exit code alone must mark the call as failed.
    """
    return bool(data.get("is_error")) or data.get("exit_code") not in (None, 0)


def tool_outcome(data: dict[str, Any]) -> str:
    """`ok`, `exit 1`, `error`: how a tool call ended."""
    code = data.get("exit_code")
    if code not in (None, 0):
        return f"exit {code}"
    return "error" if data.get("is_error") else "ok"


HEARTBEAT_S = 30.0  # a plain line this often while one tool call runs


class PlainLines:
    """One timestamped line per event, no control codes: for CI, pipes and nohup.

    A tool call gets a line when it starts and, while it runs, a heartbeat line every
    `heartbeat_s` seconds, so a long command in a CI log is not mistaken for a hang.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        verbose: bool = False,
        show_text: bool = False,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.out = out or sys.stderr
        self.verbose = verbose
        self.show_text = show_text
        self.heartbeat_s = heartbeat_s
        self._text: list[str] = []  # the streamed text of the model call in flight
        self._write_lock = threading.Lock()
        self._beat: tuple[threading.Event, threading.Thread] | None = None

    def line(self, event: Event) -> str | None:
        """The line (or lines) an event prints, or None for events not shown."""
        d = event.data
        it = f"[{event.iteration}] " if event.iteration else ""
        match event.name:
            case "run_started":
                resumed = (
                    f" (resumed at iteration {d['resumed_at']})" if d.get("resumed_at") else ""
                )
                return (
                    f"run {event.run_id}: {d.get('prompt_name')} with {d.get('model')} "
                    f"on branch {d.get('branch')}{resumed}"
                )
            case "iteration_started":
                limit = d.get("max_iterations") or "∞"
                return f"{it}iteration {event.iteration}/{limit} started"
            case "model_call":
                return self._model_line(it, d)
            case "tool_started":
                return f"{it}{tool_label(d.get('tool', ''), d.get('input'))} started"
            case "model_retry":
                return f"{it}model unavailable ({short(d.get('reason'), 80)}); retrying in {d.get('wait_s', 0):.1f}s"
            case "tool_finished":
                line = (
                    f"{it}{tool_label(d.get('tool', ''), d.get('input'))} -> "
                    f"{tool_outcome(d)} in {fmt_duration(d.get('duration_s'))}"
                )
                if self.verbose and d.get("output"):
                    line += "\n" + clean(d["output"]).rstrip()
                return line
            case "promise_seen":
                verdict = "accepted" if d.get("accepted") else "rejected"
                reasons = "; ".join(d.get("reasons") or [])
                return f"{it}promise {d.get('token')} {verdict}" + (
                    f": {short(reasons, 300)}" if reasons else ""
                )
            case "task_started":  # a task-list run (tasklist.py)
                return f"{it}task {short(d.get('id'), 40)}: {short(d.get('title'))}"
            case "task_ended":
                why = f": {short(d.get('reason'), 300)}" if d.get("reason") else ""
                return f"{it}task {short(d.get('id'), 40)} {d.get('status')}{why}"
            case "task_retry":
                why = short(d.get("reason"), 300)
                return f"{it}task {short(d.get('id'), 40)} not done ({d.get('failures')}): {why}"
            case "commit":
                return f"{it}commit {str(d.get('sha'))[:8]}: {len(d.get('files') or [])} file(s)"
            case "guard_tripped":
                return f"{it}guard {d.get('guard')}: {short(d.get('message'), 300)}"
            case "guidance":
                standing = " (standing)" if d.get("keep") else ""
                return f"{it}operator guidance{standing}: {short(d.get('text'), 300)}"
            case (
                "warning"
                | "model_error"
                | "pull_request_failed"
                | "stop_requested"
                | ("notification_failed")
            ):
                return f"{it}{event.level}: {short(d.get('message'), 500)}"
            case "pull_request":
                verb = ("opened" if d.get("created") else "updated") + (
                    " (draft)" if d.get("draft") else ""
                )
                return f"pull request #{d.get('number')} {verb}: {d.get('url')}"
            case "iteration_ended":
                return (
                    f"{it}iteration {d.get('outcome')}: {short(d.get('summary'))} · "
                    f"{len(d.get('files_changed') or [])} file(s) · "
                    f"{fmt_tokens(usage_total(d.get('usage')))} tokens · "
                    f"{fmt_cost(d.get('cost_usd'))} · {fmt_duration(d.get('duration_s'))}"
                )
            case "run_ended":
                line = (
                    f"run {d.get('status')} after {d.get('iterations')} iteration(s): "
                    f"{d.get('reason')}"
                )
                if d.get("resume"):
                    line += f"\nresume with: {d['resume']}"
                return line
        return None

    def _model_line(self, it: str, d: dict[str, Any]) -> str:
        text, self._text = "".join(self._text), []
        usage = d.get("usage") or {}
        cached = int(usage.get("cache_read_input_tokens") or 0)
        line = (
            f"{it}model turn {d.get('turn')}: {d.get('stop_reason')} · "
            f"{fmt_tokens(usage.get('input_tokens'))} in / {fmt_tokens(usage.get('output_tokens'))} out"
            + (f" / {fmt_tokens(cached)} cached" if cached else "")
            + f" · {fmt_duration(d.get('latency_s'))}"
        )
        if text.strip() and self.show_text:
            return line + "\n" + clean(text).rstrip()
        if text.strip():
            return line + f' · "{short(last_line(text), 60)}"'
        return line

    def handle(self, event: Event) -> None:
        if event.name == "model_text":
            self._text.append(str(event.data.get("text") or ""))
            return
        if event.name == "model_started":
            self._text = []
        if event.name in ("tool_finished", "iteration_ended", "run_ended"):
            self._stop_heartbeat()
        text = self.line(event)
        if text is not None:
            self._write(text, event.ts)
        if event.name == "tool_started" and self.heartbeat_s > 0:
            self._start_heartbeat(event)

    def _write(self, text: str, ts: float) -> None:
        from .redact import redact

        stamp = time.strftime("%H:%M:%S", time.localtime(ts))
        with self._write_lock:
            self.out.write(f"{stamp} {redact(text)}\n")
            self.out.flush()

    def _start_heartbeat(self, event: Event) -> None:
        self._stop_heartbeat()
        it = f"[{event.iteration}] " if event.iteration else ""
        label = tool_label(event.data.get("tool", ""), event.data.get("input"))
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_s):
                elapsed = fmt_duration(time.time() - event.ts)
                self._write(f"{it}{label} still running ({elapsed})", time.time())

        thread = threading.Thread(target=beat, name="ralph-heartbeat", daemon=True)
        self._beat = (stop, thread)
        thread.start()

    def _stop_heartbeat(self) -> None:
        beat, self._beat = self._beat, None
        if beat is not None:
            beat[0].set()
            beat[1].join(timeout=5)

    def close(self) -> None:
        self._stop_heartbeat()


# --- the end-of-run summary table ------------------------------------------------------------

NARROW = 60  # below this many columns the summary is lines, not a table
MIN_SUMMARY = 16  # narrowest summary column worth showing; optional columns go first
OPTIONAL = ("commit", "files", "cost", "time")  # dropped in this order when space is short
PIPED_WIDTH = 400  # the summary's width when it goes to a pipe or file
SHOWN_ROWS = 20  # the terminal shows the last iterations; report.md keeps them all


def _columns(s: RunSummary) -> list[tuple[str, list[str], str]]:
    """(name, cells, footer) of the summary table, summary column excluded."""
    its = s.iterations
    return [
        ("#", [str(i.number) for i in its], "total"),
        ("outcome", [clean(i.outcome) for i in its], ""),
        (
            "files",
            [str(len(i.files_changed)) for i in its],
            str(sum(len(i.files_changed) for i in its)),
        ),
        ("commit", [_commits(i.commits or ([i.commit] if i.commit else [])) for i in its], ""),
        ("tokens", [f"{i.tokens:,}" for i in its], f"{s.tokens:,}"),
        ("cost", [fmt_cost(i.cost_usd) for i in its], fmt_cost(s.cost_usd)),
        ("time", [fmt_duration(i.duration_s) for i in its], fmt_duration(s.duration_s)),
    ]


def _commits(shas: list[str]) -> str:
    """`1a2b3c4d`, or `1a2b3c4d +1` for an iteration committed by more than one attempt."""
    if not shas:
        return "-"
    return shas[-1][:8] + (f" +{len(shas) - 1}" if len(shas) > 1 else "")


def _table(s: RunSummary, width: int) -> Any:
    """The iterations table, fitted to `width`: optional columns dropped, summary ellipsized."""
    from rich.table import Table
    from rich.text import Text

    from .redact import redact

    columns = _columns(s)

    def fixed(cols: list[tuple[str, list[str], str]]) -> int:
        natural = sum(max(len(c) for c in [name, footer, *cells]) for name, cells, footer in cols)
        return natural + 3 * (len(cols) + 1) + 1  # padding and borders, summary included

    for name in OPTIONAL:
        if width - fixed(columns) >= MIN_SUMMARY:
            break
        columns = [c for c in columns if c[0] != name]
    natural = max(
        [len("summary"), *(len(" ".join(clean(i.summary).split())) for i in s.iterations)]
    )
    room = min(natural, max(MIN_SUMMARY, width - fixed(columns)))
    table = Table(title=f"ralph run {s.run_id}", title_justify="left", show_footer=True)
    for name, _, footer in columns[:2]:
        table.add_column(
            name, footer=footer, no_wrap=True, justify="right" if name == "#" else "left"
        )
    table.add_column("summary", width=room, no_wrap=True, overflow="ellipsis")
    for name, _, footer in columns[2:]:
        table.add_column(name, footer=footer, no_wrap=True, justify="right")
    hidden = max(0, len(s.iterations) - SHOWN_ROWS)
    if hidden:
        table.caption = f"{hidden} earlier iterations are in the report"
    for row, it in enumerate(s.iterations):
        if row < hidden:
            continue
        cells = [cells[row] for _, cells, _ in columns]
        summary = Text(
            redact(" ".join(clean(it.summary).split())), no_wrap=True, overflow="ellipsis"
        )
        table.add_row(*cells[:2], summary, *cells[2:])
    return table


def print_summary(summary: RunSummary, out: TextIO, report_path: Path | None = None) -> None:
    """The summary table on a terminal (or plain text when `out` is not one)."""
    from rich.console import Console
    from rich.text import Text

    from .redact import redact
    from .report import budget_rows

    s = summary
    console = Console(file=out, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or in a CI log: nothing to fit, so nothing is cut (a terminal's COLUMNS is
        # honoured when it is set).
        console = Console(file=out, highlight=False, width=PIPED_WIDTH)
    if console.width >= NARROW:
        console.print(_table(s, console.width))
    else:
        console.print(Text(f"ralph run {s.run_id}", style="bold"))
        hidden = max(0, len(s.iterations) - SHOWN_ROWS)
        if hidden:
            console.print(Text(f"{hidden} earlier iterations are in the report"))
        for it in s.iterations[hidden:]:
            text = redact(" ".join(clean(it.summary).split()))
            line = f"{it.number} {clean(it.outcome)} · {it.tokens:,} tok · {text}"
            console.print(Text(line), no_wrap=True, overflow="ellipsis")
    # The agent's words (summaries, reasons) never reach the terminal with escape codes.
    console.print(Text(f"{s.status}: {redact(clean(s.reason))}", style="bold"), soft_wrap=True)
    used = [
        f"{name} {u}" + ("" if lim == "no limit" else f"/{lim}") for name, u, lim in budget_rows(s)
    ]
    console.print(Text("budgets: " + " · ".join(used)))
    # Paths and commands are printed whole (soft wrap) so they can be copied.
    for line in where_lines(s):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    if report_path is not None:
        console.print(f"report: {report_path}", soft_wrap=True, markup=False)
    if s.resume:
        console.print(f"resume with: {s.resume}", soft_wrap=True, markup=False)
    if s.next_steps:
        console.print("next:", soft_wrap=True, markup=False)
        for step in s.next_steps:
            console.print(f"  {step}", soft_wrap=True, markup=False, highlight=False)


def result_object(s: RunSummary, report_path: Path | None) -> dict[str, Any]:
    """The run's result for scripts (`--output-format json`), as `claude -p` gives one."""
    from .redact import redact

    cost = None if s.cost_usd is None else round(float(s.cost_usd), 6)
    return {
        "run_id": s.run_id,
        "status": s.status,
        "exit_code": s.exit_code,
        "reason": redact(clean(s.reason)),
        "iterations": len(s.iterations),
        "branch": s.branch,
        "worktree": s.worktree,
        "base_commit": s.base_commit,
        "commits": list(s.commits),
        "usage": dict(s.usage),
        "cost_usd": cost,
        "duration_s": round(s.duration_s, 3),
        "pull_request": s.pull_request,
        "report": str(report_path) if report_path is not None else None,
        "resume": s.resume,
        "next": list(s.next_steps),
    }


def print_result(summary: RunSummary, out: TextIO, report_path: Path | None = None) -> None:
    """One JSON object on `out`: the run's result (`--output-format json`)."""
    out.write(json.dumps(result_object(summary, report_path)) + "\n")
    out.flush()


def where_lines(s: RunSummary) -> list[str]:
    """Where the work is (branch or worktree, commits) and whether it ran sandboxed."""
    lines = []
    if s.branch:
        n = len(s.commits)
        base = f" from {s.base_commit[:8]}" if s.base_commit else ""
        lines.append(f"branch: {s.branch} · {n} commit{'' if n == 1 else 's'}{base}")
    if s.worktree:
        lines.append(f"worktree: {s.worktree}")
    if s.sandbox == "bwrap":
        lines.append(f"sandbox: bubblewrap (network {s.network or 'on'})")
    elif s.sandbox:
        lines.append("sandbox: OFF — the agent's commands ran unsandboxed; review every change")
    return lines


def _is_terminal(stream: TextIO) -> bool:
    import os

    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def make_observers(cfg: RunConfig, stderr: TextIO | None = None) -> list[Observer]:
    """The observers a run's settings ask for (screen, --log-file, OpenTelemetry).

    The final summary is not an observer: the runner writes it at the end of every run.
    """
    err = stderr or sys.stderr
    observers: list[Observer] = []
    if cfg.log_format == "json":  # JSON is for machines: --quiet does not silence it
        from .logs import JsonLines

        observers.append(JsonLines(err, verbose=cfg.verbose, show_text=cfg.show_text))
    elif cfg.quiet:
        pass
    elif cfg.log_format == "rich" or (cfg.log_format == "auto" and _is_terminal(err)):
        from .live import LiveView

        observers.append(LiveView.for_config(cfg, err))
    else:
        observers.append(PlainLines(err, verbose=cfg.verbose, show_text=cfg.show_text))
    if cfg.log_file is not None:
        from .logs import JsonLines

        observers.append(
            JsonLines.to_file(cfg.log_file, verbose=cfg.verbose, show_text=cfg.show_text)
        )
    from .telemetry import otel_observer

    tracer = otel_observer(cfg)
    if tracer is not None:
        observers.append(tracer)
    return observers

"""Plain timestamped lines: the run's events as text, for pipes, CI logs and `ralph watch`."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from ..events import Event
from ..redact import redact
from ..text import (
    clean,
    fmt_cost,
    fmt_duration,
    fmt_tokens,
    last_line,
    short,
    tool_label,
    tool_outcome,
    usage_total,
)

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

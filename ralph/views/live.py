"""The live terminal view (rich): a small panel that ticks, with history scrolling above it.

The panel shows the run, the iteration, tokens, cost against the budgets, what is happening
now (with its elapsed time or a rate-limit countdown) and the last few tool calls. Every panel
row is one line, ellipsized to the terminal width, so long output or a narrow terminal never
garbles it; history (iterations, tool calls, promises, guards; tool outputs with -v and the
agent's text with --show-text) is printed above the panel and scrolls normally.

This module keeps the panel's state, applies the events to it and runs rich's Live;
live_draw.py draws. rich is imported only once a live view starts (it is slow to import, and
views/ui.py imports this module for every run).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, cast

from ..config import RunConfig
from ..events import Event
from ..redact import redact
from ..text import fmt_duration, short, tool_failed, tool_label, tool_outcome
from .plain import PlainLines

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

RECENT_TOOLS = 5
STREAM_TAIL = 400  # characters of streamed text kept for the compact "last line"


@dataclass
class ToolRow:
    """One finished (or running) tool call in the panel's recent list."""

    label: str
    ok: bool | None  # None while running
    tool_use_id: str | None = None
    outcome: str = ""
    duration_s: float | None = None
    started: float | None = None


@dataclass
class LiveState:
    """What the panel shows; updated by events, read by the refresh thread."""

    run_id: str = ""
    prompt: str = ""
    model: str = ""
    max_iterations: int = 0
    iteration: int | None = None
    started: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = 0.0
    activity: str = "starting"
    activity_since: float | None = None
    retry_until: float | None = None
    stream: str = ""  # the tail of the text streamed in the current model call
    recent: deque[ToolRow] = field(default_factory=lambda: deque(maxlen=RECENT_TOOLS))
    ended: str | None = None


class LiveView:
    """An observer that drives a rich Live panel on stderr."""

    def __init__(
        self,
        console: Console,
        *,
        max_cost: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        verbose: bool = False,
        show_text: bool = False,
        auto_refresh: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.console = console
        self.max_cost, self.max_tokens, self.timeout = max_cost, max_tokens, timeout
        self.verbose = verbose
        self.show_text = show_text
        self.auto_refresh = auto_refresh
        self.clock = clock
        self.state = LiveState()
        self._text: list[str] = []  # the current call's full text, for --show-text
        self._lock = threading.Lock()  # state vs the refresh thread; never held while printing
        self._live: Live | None = None
        self._fallback: PlainLines | None = None

    @classmethod
    def for_config(cls, cfg: RunConfig, stream: TextIO | None = None) -> LiveView:
        """A view on `stream` (default stderr) with the run's budgets and verbosity."""
        from rich.console import Console  # rich: only once a live view is made

        out = stream or sys.stderr
        console = Console(file=out, force_terminal=True if cfg.log_format == "rich" else None)
        return cls(
            console,
            max_cost=cfg.max_cost,
            max_tokens=cfg.max_tokens,
            timeout=cfg.timeout,
            verbose=cfg.verbose,
            show_text=cfg.show_text,
        )

    # --- events ---------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if self._fallback is not None:
            self._fallback.handle(event)
            return
        try:
            with self._lock:
                printed = self._update(event)
            if event.name == "run_started":
                self._start()
            for item in printed:
                self.console.print(item)
        except Exception as exc:  # a display bug must not end an overnight run: go plain
            self.close()
            self._fallback = PlainLines(cast(TextIO, self.console.file), verbose=self.verbose)
            self._fallback.out.write(f"ralph: live view failed ({exc!r}); plain lines from now\n")
            return
        if event.name == "run_ended":
            self.close()

    def _update(self, event: Event) -> list[RenderableType]:
        """Apply an event to the state; return what to print above the panel."""
        from .live_draw import iteration_line, line, rule, text_block  # rich: once it draws

        s, d, now = self.state, event.data, event.ts
        out: list[RenderableType] = []
        match event.name:
            case "run_started":
                s.run_id, s.prompt, s.model = (
                    event.run_id,
                    str(d.get("prompt_name")),
                    str(d.get("model")),
                )
                # A resumed run's budgets count its earlier sessions (the guards are seeded
                # with them): start the panel's totals and clock from there, not from zero.
                earlier = float(d.get("earlier_elapsed_s") or 0)
                s.max_iterations, s.started = int(d.get("max_iterations") or 0), now - earlier
                if isinstance(d.get("earlier_usage"), dict):  # resumed
                    s.usage = {k: int(v or 0) for k, v in d["earlier_usage"].items()}
                    cost = d.get("earlier_cost_usd")  # None: a price was unknown
                    s.cost_usd = None if cost is None else float(cost)
                self._activity("starting", now)
            case "iteration_started":
                s.iteration = event.iteration
                s.recent.clear()
                limit = s.max_iterations or "∞"
                out.append(rule(f"iteration {event.iteration}/{limit}"))
            case "model_started":
                self._text, s.stream = [], ""
                self._activity(f"waiting for the model (turn {d.get('turn')})", now)
            case "model_text":
                delta = str(d.get("text") or "")
                if self.show_text:
                    self._text.append(delta)
                s.stream = (s.stream + delta)[-STREAM_TAIL:]
                if not s.activity.startswith("streaming"):
                    self._activity("streaming", now)
            case "model_retry":
                wait = float(d.get("wait_s") or 0)
                self._activity(f"model unavailable ({short(d.get('reason'), 40)})", now)
                s.retry_until = now + wait
                out.append(
                    line(
                        "⏳",
                        f"model unavailable ({d.get('reason')}); retrying in {wait:.0f}s",
                        "yellow",
                    )
                )
            case "model_call":
                self._add_usage(d.get("usage"), d.get("cost_usd"))
                if self.show_text and "".join(self._text).strip():
                    out.append(text_block(redact("".join(self._text))))
                self._text, s.stream = [], ""
                self._activity("thinking", now)
            case "model_error":
                out.append(line("✗", f"model error: {d.get('message')}", "red"))
            case "tool_started":
                label = redact(tool_label(str(d.get("tool")), d.get("input"), 200))
                s.recent.append(ToolRow(label, None, d.get("tool_use_id"), started=now))
                self._activity(label, now)
            case "tool_finished":
                out.extend(self._tool_finished(d, now))
            case "promise_seen":
                ok = bool(d.get("accepted"))
                reasons = "; ".join(d.get("reasons") or [])
                verdict = "accepted" if ok else "rejected"
                text = f"promise {d.get('token')} {verdict}" + (f": {reasons}" if reasons else "")
                out.append(line("✓" if ok else "✗", text, "green" if ok else "yellow"))
            case "task_started" | "task_ended":  # a task-list run (tasklist.py)
                done = d.get("status") == "done"
                text = f"task {d.get('id')} {d.get('status', 'started')}: " + str(
                    d.get("reason") or d.get("title") or ""
                )
                out.append(line("✓" if done else "•", text, "green" if done else ""))
            case "guard_tripped":
                out.append(line("■", f"guard {d.get('guard')}: {d.get('message')}", "red"))
            case "guidance":
                out.append(line("»", f"operator guidance: {d.get('text')}", "cyan"))
            case "warning" | "pull_request_failed" | "stop_requested" | "notification_failed":
                out.append(line("!", f"{event.level}: {d.get('message')}", "yellow"))
            case "pull_request":
                verb = ("opened" if d.get("created") else "updated") + (
                    " (draft)" if d.get("draft") else ""
                )
                out.append(
                    line("↑", f"pull request #{d.get('number')} {verb}: {d.get('url')}", "green")
                )
            case "iteration_ended":
                self._settle_tools(str(d.get("outcome") or "stopped"), now)
                out.append(iteration_line(event))
                self._activity("between iterations", now)
            case "run_ended":
                self._settle_tools(str(d.get("status") or "stopped"), now)
                s.ended = f"{d.get('status')}: {d.get('reason')}"
                self._activity(f"run {d.get('status')}", now)
        return out

    def _settle_tools(self, why: str, now: float) -> None:
        """Tool calls that never finished (the iteration was interrupted or stopped around
        them) end as that, not as `running` forever in the last frame."""
        for row in self.state.recent:
            if row.ok is None:
                row.ok, row.outcome = False, f"not finished ({why})"
                row.duration_s = now - row.started if row.started is not None else None

    def _activity(self, text: str, since: float) -> None:
        self.state.activity, self.state.activity_since, self.state.retry_until = text, since, None

    def _add_usage(self, usage: Any, cost: Any) -> None:
        s = self.state
        for key, value in (usage or {}).items():
            s.usage[key] = s.usage.get(key, 0) + int(value or 0)
        s.cost_usd = None if s.cost_usd is None or cost is None else s.cost_usd + float(cost)

    def _tool_finished(self, d: dict[str, Any], now: float) -> list[RenderableType]:
        from .live_draw import line, text_block  # (the same)

        s = self.state
        label = redact(tool_label(str(d.get("tool")), d.get("input"), 200))
        use_id = d.get("tool_use_id")
        row = next((r for r in s.recent if r.ok is None and r.tool_use_id == use_id), None)
        if row is None:
            row = ToolRow(label, None, use_id)
            s.recent.append(row)
        row.ok, row.outcome, row.duration_s = (
            not tool_failed(d),
            tool_outcome(d),
            d.get("duration_s"),
        )
        self._activity("thinking", now)
        out: list[RenderableType] = [
            line(
                "✓" if row.ok else "✗",
                f"{label} · {row.outcome} · {fmt_duration(row.duration_s)}",
                "dim" if row.ok else "red",
            )
        ]
        if self.verbose and d.get("output"):
            out.append(text_block(redact(str(d["output"])), style="dim"))
        return out

    # --- the panel ------------------------------------------------------------------------

    def render(self) -> RenderableType:
        """The panel for the current state (called by rich on every refresh)."""
        from .live_draw import panel, panel_rows  # (the same)

        with self._lock:
            rows = panel_rows(
                self.state, self.clock(), self.max_cost, self.max_tokens, self.timeout
            )
        return panel(rows)

    # --- lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        from rich.live import Live  # rich: only once a live view starts

        if self._live is not None:
            return
        self._live = Live(
            console=self.console,
            get_renderable=self.render,
            transient=False,
            auto_refresh=self.auto_refresh,
            refresh_per_second=4,
            redirect_stdout=True,
            redirect_stderr=True,
            vertical_overflow="crop",
        )
        self._live.start()

    def close(self) -> None:
        """Stop the panel, leaving its last state on the screen."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

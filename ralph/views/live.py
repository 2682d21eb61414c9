"""The live terminal view (rich): a small panel that ticks, with history scrolling above it.

The panel shows the run, the iteration, tokens, cost against the budgets, what is happening
now (with its elapsed time or a rate-limit countdown) and the last few tool calls. Every panel
row is one line, ellipsized to the terminal width, so long output or a narrow terminal never
garbles it; history (iterations, tool calls, promises, guards; tool outputs with -v and the
agent's text with --show-text) is printed above the panel and scrolls normally.
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
from ..text import (
    clean,
    fmt_cost,
    fmt_duration,
    fmt_tokens,
    last_line,
    short,
    tool_failed,
    tool_label,
    tool_outcome,
    usage_total,
)
from .plain import PlainLines

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

RECENT_TOOLS = 5
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
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
        from rich.console import Console

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
        from ..redact import redact

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
                out.append(self._rule(f"iteration {event.iteration}/{limit}"))
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
                    self._line(
                        "⏳",
                        f"model unavailable ({d.get('reason')}); retrying in {wait:.0f}s",
                        "yellow",
                    )
                )
            case "model_call":
                self._add_usage(d.get("usage"), d.get("cost_usd"))
                if self.show_text and "".join(self._text).strip():
                    out.append(self._text_block(redact("".join(self._text))))
                self._text, s.stream = [], ""
                self._activity("thinking", now)
            case "model_error":
                out.append(self._line("✗", f"model error: {d.get('message')}", "red"))
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
                out.append(self._line("✓" if ok else "✗", text, "green" if ok else "yellow"))
            case "task_started" | "task_ended":  # a task-list run (tasklist.py)
                done = d.get("status") == "done"
                text = f"task {d.get('id')} {d.get('status', 'started')}: " + str(
                    d.get("reason") or d.get("title") or ""
                )
                out.append(self._line("✓" if done else "•", text, "green" if done else ""))
            case "guard_tripped":
                out.append(self._line("■", f"guard {d.get('guard')}: {d.get('message')}", "red"))
            case "guidance":
                out.append(self._line("»", f"operator guidance: {d.get('text')}", "cyan"))
            case "warning" | "pull_request_failed" | "stop_requested" | "notification_failed":
                out.append(self._line("!", f"{event.level}: {d.get('message')}", "yellow"))
            case "pull_request":
                verb = ("opened" if d.get("created") else "updated") + (
                    " (draft)" if d.get("draft") else ""
                )
                out.append(
                    self._line(
                        "↑", f"pull request #{d.get('number')} {verb}: {d.get('url')}", "green"
                    )
                )
            case "iteration_ended":
                self._settle_tools(str(d.get("outcome") or "stopped"), now)
                out.append(self._iteration_line(event))
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
        from ..redact import redact

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
            self._line(
                "✓" if row.ok else "✗",
                f"{label} · {row.outcome} · {fmt_duration(row.duration_s)}",
                "dim" if row.ok else "red",
            )
        ]
        if self.verbose and d.get("output"):
            out.append(self._text_block(redact(str(d["output"])), style="dim"))
        return out

    # --- printing above the panel -----------------------------------------------------------

    def _line(self, mark: str, text: str, style: str = "") -> RenderableType:
        from rich.text import Text

        from ..redact import redact

        line = Text(f"{mark} ", style=style)
        line.append(" ".join(redact(clean(text)).split()), style=style)
        return line

    def _text_block(self, text: str, style: str = "") -> RenderableType:
        from rich.text import Text

        return Text(clean(text).rstrip(), style=style)

    def _rule(self, title: str) -> RenderableType:
        from rich.rule import Rule

        return Rule(title, style="blue")

    def _iteration_line(self, event: Event) -> RenderableType:
        d = event.data
        ok = d.get("outcome") == "ended"
        commit = f" · {str(d['commit'])[:8]}" if d.get("commit") else ""
        text = (
            f"iteration {event.iteration} {d.get('outcome')}: {d.get('summary')} · "
            f"{len(d.get('files_changed') or [])} file(s){commit} · "
            f"{fmt_tokens(usage_total(d.get('usage')))} tokens · {fmt_cost(d.get('cost_usd'))} · "
            f"{fmt_duration(d.get('duration_s'))}"
        )
        return self._line("●", text, "bold" if ok else "yellow")

    # --- the panel ------------------------------------------------------------------------

    def render(self) -> RenderableType:
        """The panel for the current state (called by rich on every refresh)."""
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            rows = self._rows(self.clock())
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        for label, value in rows:
            grid.add_row(label, value)
        title = Text("ralph", style="bold", no_wrap=True, overflow="ellipsis")
        return Panel(grid, title=title, title_align="left", border_style="blue", expand=True)

    def _rows(self, now: float) -> list[tuple[str, Any]]:
        from rich.text import Text

        s = self.state
        elapsed = now - s.started if s.started else 0.0
        usage = s.usage
        limit = s.max_iterations or "∞"
        rows: list[tuple[str, Any]] = [
            ("run", Text(s.run_id, no_wrap=True, overflow="ellipsis")),
            (
                "prompt",
                Text(short(f"{s.prompt} · {s.model}", 300), no_wrap=True, overflow="ellipsis"),
            ),
            ("iteration", Text(f"{s.iteration or '-'}/{limit} · elapsed {fmt_duration(elapsed)}")),
            (
                "tokens",
                Text(
                    f"in {fmt_tokens(usage.get('input_tokens', 0))} · "
                    f"out {fmt_tokens(usage.get('output_tokens', 0))} · "
                    f"cached {fmt_tokens(usage.get('cache_read_input_tokens', 0))}"
                ),
            ),
            ("budget", Text(self._budget(elapsed), no_wrap=True, overflow="ellipsis")),
            ("now", self._now_text(now)),
        ]
        for i, row in enumerate(s.recent):
            if row.ok is None:
                mark, style, tail = (
                    "…",
                    "cyan",
                    f"running {fmt_duration(now - (row.started or s.activity_since or now))}",
                )
            else:
                mark, style = ("✓", "green") if row.ok else ("✗", "red")
                tail = f"{row.outcome} · {fmt_duration(row.duration_s)}"
            line = Text(f"{mark} ", style=style, no_wrap=True, overflow="ellipsis")
            line.append(f"{row.label} · {tail}")
            rows.append(("tools" if i == 0 else "", line))
        return rows

    def _budget(self, elapsed: float) -> str:
        s = self.state
        tokens = sum(s.usage.values())
        parts = [
            f"cost {fmt_cost(s.cost_usd)}"
            + (f"/{fmt_cost(self.max_cost)}" if self.max_cost is not None else "")
        ]
        if self.max_tokens is not None:
            parts.append(f"tokens {fmt_tokens(tokens)}/{fmt_tokens(self.max_tokens)}")
        if self.timeout is not None:
            parts.append(f"time {fmt_duration(elapsed)}/{fmt_duration(self.timeout)}")
        return " · ".join(parts)

    def _now_text(self, now: float) -> Any:
        from rich.text import Text

        from ..redact import redact

        s = self.state
        if s.ended:
            return Text(short(s.ended, 300), style="bold", no_wrap=True, overflow="ellipsis")
        spin = SPINNER[int(now * 10) % len(SPINNER)]
        since = fmt_duration(max(0.0, now - s.activity_since)) if s.activity_since else ""
        if s.retry_until is not None:
            detail = f"{s.activity}: retrying in {max(0.0, s.retry_until - now):.0f}s"
        elif s.activity == "streaming":
            tail = last_line(s.stream)
            detail = f"streaming ({since})" + (f": {short(redact(tail), 300)}" if tail else "")
        else:
            detail = f"{s.activity} ({since})" if since else s.activity
        return Text(f"{spin} {detail}", style="cyan", no_wrap=True, overflow="ellipsis")

    # --- lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        from rich.live import Live

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

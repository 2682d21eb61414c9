"""How the live view draws (rich): its panel, from the state live.py keeps, and the lines
printed above it.

The panel shows the run, the iteration, tokens, cost against the budgets, what is happening
now (with its elapsed time or a rate-limit countdown) and the last few tool calls; every row
is one line, ellipsized to the terminal width. Imported by live.py only once it draws, so
that choosing the observers (views/ui.py) loads no rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..events import Event
from ..redact import redact
from ..text import clean, fmt_cost, fmt_duration, fmt_tokens, last_line, short, usage_total

if TYPE_CHECKING:
    from .live import LiveState

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


# --- printing above the panel ---------------------------------------------------------------


def line(mark: str, text: str, style: str = "") -> Text:
    """One history line: a mark, then `text` cleaned, redacted and on one line."""
    out = Text(f"{mark} ", style=style)
    out.append(" ".join(redact(clean(text)).split()), style=style)
    return out


def text_block(text: str, style: str = "") -> Text:
    return Text(clean(text).rstrip(), style=style)


def rule(title: str) -> Rule:
    return Rule(title, style="blue")


def iteration_line(event: Event) -> Text:
    """The line an ended iteration leaves: outcome, summary, files, commit and what it spent."""
    d = event.data
    ok = d.get("outcome") == "ended"
    commit = f" · {str(d['commit'])[:8]}" if d.get("commit") else ""
    text = (
        f"iteration {event.iteration} {d.get('outcome')}: {d.get('summary')} · "
        f"{len(d.get('files_changed') or [])} file(s){commit} · "
        f"{fmt_tokens(usage_total(d.get('usage')))} tokens · {fmt_cost(d.get('cost_usd'))} · "
        f"{fmt_duration(d.get('duration_s'))}"
    )
    return line("●", text, "bold" if ok else "yellow")


# --- the panel ------------------------------------------------------------------------------


def panel(rows: list[tuple[str, Any]]) -> RenderableType:
    """The panel of `rows` (label, value), each one line."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    for label, value in rows:
        grid.add_row(label, value)
    title = Text("ralph", style="bold", no_wrap=True, overflow="ellipsis")
    return Panel(grid, title=title, title_align="left", border_style="blue", expand=True)


def panel_rows(
    s: LiveState,
    now: float,
    max_cost: float | None,
    max_tokens: int | None,
    timeout: float | None,
) -> list[tuple[str, Any]]:
    """The panel's rows for state `s` at time `now`, against the run's budgets."""
    elapsed = now - s.started if s.started else 0.0
    usage = s.usage
    limit = s.max_iterations or "∞"
    budget = budget_line(s, elapsed, max_cost, max_tokens, timeout)
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
        ("budget", Text(budget, no_wrap=True, overflow="ellipsis")),
        ("now", now_text(s, now)),
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
        tool = Text(f"{mark} ", style=style, no_wrap=True, overflow="ellipsis")
        tool.append(f"{row.label} · {tail}")
        rows.append(("tools" if i == 0 else "", tool))
    return rows


def budget_line(
    s: LiveState,
    elapsed: float,
    max_cost: float | None,
    max_tokens: int | None,
    timeout: float | None,
) -> str:
    """Cost, and tokens and time where they have a limit, against their limits."""
    tokens = sum(s.usage.values())
    parts = [
        f"cost {fmt_cost(s.cost_usd)}" + (f"/{fmt_cost(max_cost)}" if max_cost is not None else "")
    ]
    if max_tokens is not None:
        parts.append(f"tokens {fmt_tokens(tokens)}/{fmt_tokens(max_tokens)}")
    if timeout is not None:
        parts.append(f"time {fmt_duration(elapsed)}/{fmt_duration(timeout)}")
    return " · ".join(parts)


def now_text(s: LiveState, now: float) -> Text:
    """What is happening now: the activity and how long it has run, a retry's countdown or
    the streamed text's last line; how the run ended once it has."""
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

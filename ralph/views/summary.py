"""The end of a run on the terminal: the summary table, the budgets, where the work is and
what to do next; or, with `--output-format json`, one JSON object for scripts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..redact import redact
from ..text import clean, fmt_cost, fmt_duration
from .markdown import one_line

if TYPE_CHECKING:
    from .report import RunSummary

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
    from rich.table import Table  # rich: only when a table is drawn
    from rich.text import Text  # (the same)

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


def _limit(value: Any, fmt: Any) -> str:
    return "no limit" if value in (None, 0) else str(fmt(value))


def budget_rows(s: RunSummary) -> list[tuple[str, str, str]]:
    """(budget, used, limit) rows: iterations, tokens, cost, time."""
    lim = s.limits
    return [
        ("iterations", str(len(s.iterations)), _limit(lim.get("max_iterations"), str)),
        ("tokens", f"{s.tokens:,}", _limit(lim.get("max_tokens"), lambda v: f"{int(v):,}")),
        ("cost", fmt_cost(s.cost_usd), _limit(lim.get("max_cost"), lambda v: f"${float(v):.2f}")),
        ("time", fmt_duration(s.duration_s), _limit(lim.get("timeout"), fmt_duration)),
    ]


def print_summary(summary: RunSummary, out: TextIO, report_path: Path | None = None) -> None:
    """The summary table on a terminal (or plain text when `out` is not one)."""
    from rich.console import Console  # rich: only when a summary is printed
    from rich.text import Text  # (the same)

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
        "large_files": [
            {"path": clean(f.path), "size": f.size, "binary": f.binary, "commit": f.commit}
            for f in s.bulky
        ],
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
    if s.bulky:
        named = ", ".join(f"{one_line(f.path)} ({f.describe()})" for f in s.bulky[:3])
        more = f" and {len(s.bulky) - 3} more (see the report)" if len(s.bulky) > 3 else ""
        lines.append(f"large or binary files committed: {named}{more}")
    if s.sandbox == "bwrap":
        lines.append(f"sandbox: bubblewrap (network {s.network or 'on'})")
    elif s.sandbox:
        lines.append("sandbox: OFF — the agent's commands ran unsandboxed; review every change")
    return lines

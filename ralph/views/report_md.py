"""report.md and the pull-request body: one renderer, `render_markdown`, for both; writing
report.md when a run ends (`finish`, which also prints the summary table), and reading it back
for `ralph show --report`, rebuilt from the journal when the run never wrote one.

What a report shows is gathered in report.py (`RunSummary`); this module only presents it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from ..config import STATE_DIR, RunConfig
from ..errors import UsageError
from ..git.bulky import LARGE_BYTES, BulkyFile, fmt_size
from ..redact import redact
from ..store.journal import Journal
from ..store.schema import db_path
from ..text import clean, fmt_cost, fmt_duration
from . import logs
from .markdown import code, one_line
from .markdown import text as md_text
from .report import (
    IterationRow,
    ReportCollector,
    RunSummary,
    add_git_facts,
    build_summary,
    complete,
    summary_from_journal,
)
from .summary import budget_rows, print_result, print_summary

REPORT_NAME = "report.md"


def finish(
    collector: ReportCollector,
    cfg: RunConfig,
    main_repo: Path,
    root: Path,
    error: BaseException | None = None,
    out: TextIO | None = None,
) -> Path | None:
    """Write report.md of the run `collector` saw and print the summary table; never raises
    (the run is over)."""
    try:
        summary = None
        try:
            summary = summary_from_journal(main_repo, collector.summary.run_id)
        except Exception:  # a broken journal must not cost the report: use the events
            summary = None
        if summary is None:
            summary = collector.collected()
            add_git_facts(summary, main_repo)
        complete(summary, cfg, root, error, main_repo)
        path = write_report(main_repo, summary)
        if cfg.output_format == "json":
            print_result(summary, out or sys.stdout, path)
        else:
            print_summary(summary, out or sys.stdout, path)
        return path
    except Exception as exc:
        message = f"could not write the run report: {exc!r}"
        if logs.json_active():  # in JSON log mode every stderr line is JSON
            logs.write_line(logs.record("error", level="error", message=message), sys.stderr)
        else:
            sys.stderr.write(f"ralph: {message}\n")
        return None


def _judged(promise: dict[str, Any]) -> str:
    """What the gate looked at: the commit in a clean checkout, or the working tree."""
    commit = promise.get("judged_commit")
    if promise.get("judged") == "clean checkout" and isinstance(commit, str):
        return f" (judged on a clean checkout of commit {code(commit[:12])})"
    if promise.get("judged") == "working tree":
        return " (judged on the working tree: --no-commit)"
    return ""


def cell(text: Any, width: int = 0) -> str:
    """Agent or repository text as inert Markdown on one line (a table cell or list item),
    optionally shortened first (an escape is never cut in two)."""
    line = one_line(text)
    if width and len(line) > width:
        line = line[: width - 1] + "…"
    return md_text(line)


def _files(files: list[str], shown: int = 3) -> str:
    if not files:
        return "0"
    names = ", ".join(code(f, table=True) for f in files[:shown])
    more = f" +{len(files) - shown}" if len(files) > shown else ""
    return f"{len(files)}: {names}{more}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _commits_cell(it: IterationRow) -> str:
    return ", ".join(f"`{sha[:8]}`" for sha in it.commits) or "-"


def sandbox_line(s: RunSummary) -> str:
    """Whether the agent's commands ran in the sandbox: a warning when they did not."""
    if s.sandbox == "bwrap":
        return f"bubblewrap (network {s.network or 'on'})"
    return (
        "**off** — the agent's commands ran unsandboxed, with your user's access to this "
        "machine; review every change before you trust it"
    )


def _outcome_line(s: RunSummary) -> str:
    exit_code = f" (exit {s.exit_code})" if s.exit_code is not None else ""
    return f"**{cell(s.status)}**{exit_code} — {cell(s.reason or 'no reason recorded')}"


def _task_rows(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """The task table of a task-list run: each task it worked or closed, as it ended."""
    rows = ["| Task | Title | Status | Commit | Cost |", "|---|---|---|---|---:|"]
    for task_id, t in tasks.items():
        status = cell(t.get("status"))
        if t.get("reason"):
            status += f": {cell(t['reason'], 120)}"
        commit = f"`{str(t['commit'])[:8]}`" if t.get("commit") else "-"
        rows.append(
            f"| {cell(task_id)} | {cell(t.get('title'), 80)} | {status} | {commit} | "
            f"{fmt_cost(t.get('cost_usd'))} |"
        )
    return rows


BULKY_SHOWN = 20  # large or binary files the report names; it counts the rest


def _bulky_lines(files: list[BulkyFile]) -> list[str]:
    """The large or binary files the run's commits add: worth a look before they are pushed."""

    lines = [
        f"The run's commits add these files (binary, or {fmt_size(LARGE_BYTES)} or more); "
        "once pushed they stay in the history:",
        "",
    ]
    lines += [
        f"- {code(f.path)} — {f.describe()} (commit {code(f.commit[:8])})"
        for f in files[:BULKY_SHOWN]
    ]
    if len(files) > BULKY_SHOWN:
        lines.append(f"- and {len(files) - BULKY_SHOWN} more")
    return lines


def render_markdown(summary: RunSummary, for_pr: bool = False) -> str:
    """The report as markdown (report.md), or as a pull-request body when `for_pr`.

    The PR body leaves out what only makes sense on this machine (resume command, local
    paths) and the artifact list (the PR step links the artifacts on the branch itself).
    """

    s = summary
    lines = [
        f"## ralph-loop run `{s.run_id}`" if for_pr else f"# ralph-loop run {s.run_id}",
        "",
        f"- Outcome: {_outcome_line(s)}",
        f"- Prompt: {code(s.prompt)} · model {code(s.model)}",
    ]
    if s.branch:
        base = f" (from {code(s.base_commit[:8])})" if s.base_commit else ""
        where = f" in worktree {code(s.worktree)}" if s.worktree and not for_pr else ""
        lines.append(
            f"- Branch: {code(s.branch)}{base}{where} · {_count(len(s.commits), 'commit')}"
        )
    if s.sandbox:
        lines.append(f"- Sandbox: {sandbox_line(s)}")
    lines.append(
        f"- Started: {s.started or '?'} · duration {fmt_duration(s.duration_s)} · "
        f"{s.tokens:,} tokens · cost {fmt_cost(s.cost_usd)}"
    )
    lines += ["", "### Iterations", ""]
    if s.iterations:
        lines += [
            "| # | Outcome | Summary | Files changed | Commit | Tokens | Cost | Duration |",
            "|---:|---|---|---|---|---:|---:|---:|",
        ]
        for it in s.iterations:
            summary_text = cell(it.summary, 100)
            if it.error and it.error not in it.summary:
                summary_text += f" ({cell(it.error, 100)})"
            lines.append(
                f"| {it.number} | {cell(it.outcome)} | {summary_text} | "
                f"{_files(it.files_changed)} | {_commits_cell(it)} | "
                f"{it.tokens:,} | {fmt_cost(it.cost_usd)} | {fmt_duration(it.duration_s)} |"
            )
        files = sum(len(it.files_changed) for it in s.iterations)
        lines.append(
            f"| **total** | | | {files} | | **{s.tokens:,}** | **{fmt_cost(s.cost_usd)}** | "
            f"**{fmt_duration(s.duration_s)}** |"
        )
    else:
        lines.append("No iteration finished.")
    if s.bulky:
        lines += ["", "### Large or binary files", "", *_bulky_lines(s.bulky)]
    lines += ["", "### Promises", ""]
    if s.promises:
        for p in s.promises:
            verdict = "accepted" if p["accepted"] else "rejected"
            lines.append(f"- iteration {p['iteration']}: {code(p['token'])} {verdict}{_judged(p)}")
            lines.extend(f"  - {cell(reason, 300)}" for reason in p["reasons"])
    else:
        lines.append("No promise was made.")
    if s.tasks:
        lines += ["", "### Tasks", "", *_task_rows(s.tasks)]
    lines += ["", "### Budgets", "", "| Budget | Used | Limit |", "|---|---:|---:|"]
    lines += [f"| {name} | {used} | {limit} |" for name, used, limit in budget_rows(s)]
    if s.guards:
        lines += ["", "### Guards", ""]
        lines += [
            f"- iteration {g['iteration'] or '-'}: {cell(g['guard'])} — {cell(g['message'], 300)}"
            for g in s.guards
        ]
    if s.guidance:
        lines += ["", "### Operator guidance", ""]
        lines += [
            f"- iteration {g['iteration']}{' (standing)' if g['keep'] else ''}: "
            f"{cell(g['text'], 300)}"
            for g in s.guidance
        ]
    if s.warnings:
        lines += ["", "### Warnings", ""]
        lines += [f"- {cell(w, 300)}" for w in s.warnings]
    if not for_pr:
        lines += ["", "### Artifacts", ""]
        lines += [f"- {code(a)}" for a in s.artifacts] or [
            "None of the configured artifact files exist."
        ]
        if s.resume:
            lines += ["", "### Resume", "", f"    {s.resume}"]
        if s.next_steps:
            lines += ["", "### Next", ""] + [f"    {step}" for step in s.next_steps]
    # Escape codes in the agent's words would reach whoever cats the report: none survive.
    return redact(clean("\n".join(lines) + "\n"))


def report_path(main_repo: Path, run_id: str) -> Path:
    return main_repo / STATE_DIR / "runs" / run_id / REPORT_NAME


def write_report(main_repo: Path, summary: RunSummary) -> Path:
    """Write `.ralph/runs/<run-id>/report.md` (redacted) and return its path."""
    path = report_path(main_repo, summary.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(render_markdown(summary), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a report
    return path


def load_report(main_repo: Path, run_id: str) -> str:
    """The saved report.md of run `run_id` (or a unique prefix), for `ralph show --report`;
    rebuilt from the journal (and saying so) when the run never wrote one."""
    runs = main_repo / STATE_DIR / "runs"
    run_id = _resolve(main_repo, run_id)
    path = report_path(main_repo, run_id)
    if not path.is_file() and runs.is_dir() and "/" not in run_id:
        matches = sorted(p for p in runs.glob(f"{run_id}*/{REPORT_NAME}") if p.is_file())
        if len(matches) > 1:
            shown = ", ".join(p.parent.name for p in matches[:5])
            raise UsageError(f"run {run_id!r} is ambiguous ({shown}); give more of the id")
        if matches:
            path = matches[0]
    if path.is_file():
        return path.read_text(encoding="utf-8")
    rebuilt = rebuild_report(main_repo, run_id)
    if rebuilt is None:
        raise UsageError(
            f"no report for run {run_id!r} in {runs}; `ralph runs` lists the runs "
            "(a run writes its report when it ends)"
        )
    return rebuilt


def _resolve(main_repo: Path, run: str) -> str:
    """The full id of `run` (a fragment, `latest`) when the journal knows it, else `run`."""

    if not db_path(main_repo).exists():
        return run
    journal = Journal.open(main_repo, create=False)
    try:
        return journal.resolve(run) or run
    finally:
        journal.close()


REBUILT_NOTE = (
    "> report.md is missing (the run has not ended: it is still running, or it was stopped "
    "by a second signal or kill -9); this report was rebuilt from the journal."
)


def rebuild_report(main_repo: Path, run_id: str) -> str | None:
    """The report of a run without report.md, rendered from the journal (None: no such run).

    A run killed at once (second signal, kill -9) never writes its report; the journal holds
    everything the report shows, so `ralph show --report` can still give one.
    """
    summary = build_summary(main_repo, run_id)
    if summary is None:
        return None
    title, rest = render_markdown(summary).split("\n", 1)
    return f"{title}\n\n{REBUILT_NOTE}\n{rest}"

"""`ralph runs` and `ralph show RUN`: the journal as plain-text tables or JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from ..config import find_main_repo, require_main_repo
from ..errors import UsageError
from ..status import FINISHED
from .journal import Journal
from .queries import LATEST
from .schema import db_path


def _money(cost: float | None) -> str:
    return "?" if cost is None else f"${cost:.4f}"


def _when(iso: str | None) -> str:
    return (iso or "-").replace("T", " ").removesuffix("Z")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    )


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[c]) for r in [headers, *rows]) for c in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
            for c, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _campaign_cell(run: dict[str, Any]) -> str:
    """A campaign phase's CAMPAIGN cell: the campaign's id and the phase's place in it."""
    if not run.get("campaign_id"):
        return ""
    number, count = run.get("phase_number"), run.get("phase_count")
    return str(run["campaign_id"]) + (f" {number}/{count}" if number and count else "")


def format_runs(runs: list[dict[str, Any]]) -> str:
    """The `ralph runs` table: id, prompt, started, status, iterations, cost, and when a run
    is a phase of a campaign (`ralph harden`), the campaign's id and the phase's place in it
    (the PROMPT column names the phase). The CAMPAIGN column is last and only there when a
    run is in a campaign: a run outside one keeps its line as it was."""
    if not runs:
        return "no runs yet"
    headers = ["ID", "PROMPT", "STARTED (UTC)", "STATUS", "ITERATIONS", "COST"]
    in_campaigns = any(r.get("campaign_id") for r in runs)
    rows = [
        [
            r["id"],
            r["prompt"] or "-",
            _when(r["started"]),
            # `running` is only ever a live process (a dead one is `crashed`): say which.
            f"running (pid {r['pid']})"
            if r["status"] == "running" and r.get("pid")
            else r["status"],
            str(r["iterations"]),
            _money(r["cost_usd"]),
            *([_campaign_cell(r)] if in_campaigns else []),
        ]
        for r in runs
    ]
    if in_campaigns:
        headers.append("CAMPAIGN")
    return "\n".join(_table(headers, rows, {4, 5}))


def format_run(run: dict[str, Any], resume: str | None = None) -> str:
    """The `ralph show RUN` text: the run's totals, then one line per iteration; `resume`: the
    command that resumes it (default `ralph resume ID`)."""
    usage = run["usage"]
    status = run["status"] + (f" (exit {run['exit_code']})" if run["exit_code"] is not None else "")
    lines = [
        f"run       {run['id']}",
        f"prompt    {run['prompt']}"
        + (f" ({run['prompt_source']})" if run["prompt_source"] else "")
        + f" with {run['model']}",
        f"status    {status}" + (f": {run['reason']}" if run["reason"] else ""),
        f"branch    {run['branch']} from {(run['base_commit'] or '')[:10]}"
        + (f" in worktree {run['worktree']}" if run["worktree"] else "")
        + f", {len(run.get('commits') or [])} commit(s)",
        f"started   {_when(run['started'])} UTC, ran {_duration(run['duration_s'])}"
        + (f" in {run['sessions']} sessions" if run["sessions"] > 1 else ""),
        f"tokens    {run['tokens']:,} (input {usage['input_tokens']:,}, output "
        f"{usage['output_tokens']:,}, cache write {usage['cache_creation_input_tokens']:,}, "
        f"cache read {usage['cache_read_input_tokens']:,}), cost {_money(run['cost_usd'])}",
        f"calls     {run['model_calls']} model, {run['tool_calls']} tool",
    ]
    if run.get("campaign_id"):
        place = _campaign_cell(run).removeprefix(run["campaign_id"]).strip().replace("/", " of ")
        lines.insert(
            1,
            f"campaign  {run['campaign_id']}, phase {run['phase']}"
            + (f" ({place})" if place else ""),
        )
    for p in run.get("promises") or []:
        verdict = "accepted" if p["accepted"] else "refused"
        why = f": {'; '.join(p['reasons'])}" if p["reasons"] and not p["accepted"] else ""
        lines.append(f"promise   {p['token']} in iteration {p['iteration']} {verdict}{why}")
    if run["status"] not in FINISHED:
        lines.append(f"resume    {resume or 'ralph resume ' + run['id']}")
    rows = []
    for it in run["iterations_detail"]:
        tokens = sum(it["usage"].values())
        summary = it["summary"] or it["error"] or ""
        if it["promise_seen"]:
            summary = (
                "[promise accepted] " if it["promise_accepted"] else "[promise rejected] "
            ) + summary
        rows.append(
            [
                str(it["number"]) + (f" (x{it['attempts']})" if it["attempts"] > 1 else ""),
                it["outcome"],
                ",".join(c[:8] for c in it.get("commits") or []) or "-",
                str(len(it["files_changed"])),
                f"{tokens:,}",
                "-" if it["cost_usd"] is None else f"${it['cost_usd']:.4f}",
                _duration(it["duration_s"]),
                summary[:80],
            ]
        )
    if rows:
        lines.append("")
        headers = ["#", "OUTCOME", "COMMIT", "FILES", "TOKENS", "COST", "TIME", "SUMMARY"]
        lines.extend(_table(headers, rows, {3, 4, 5, 6}))
    return "\n".join(lines)


def _journal(start: Path) -> Journal | None:
    main = require_main_repo(start)
    if not db_path(main).exists():
        return None
    return Journal.open(main, create=False)


def runs_command(start: Path, as_json: bool, out: TextIO) -> None:
    """Print the runs recorded in the repository containing `start`."""
    journal = _journal(start)
    runs = [] if journal is None else journal.list_runs()
    if journal is not None:
        journal.close()
    out.write((json.dumps(runs, indent=2) if as_json else format_runs(runs)) + "\n")


def show_command(start: Path, run: str, as_json: bool, out: TextIO) -> None:
    """Print one run (id, unique fragment or `latest`); a UsageError when there is none."""
    journal = _journal(start)
    found = None
    if journal is not None:
        try:
            found = journal.get_run(run)
        finally:
            journal.close()
    if found is None:
        if run == LATEST:
            raise UsageError("no runs recorded in this repository yet")
        raise UsageError(f"no run {run!r} in this repository; `ralph runs` lists them")
    if as_json:
        out.write(json.dumps(found, indent=2) + "\n")
        return
    from ..views.report import resume_command  # start-up: git and the report for `show` only

    main = find_main_repo(start)
    resume = resume_command(found["id"], main) if main is not None else None
    out.write(format_run(found, resume) + "\n")


def format_conversation(run_id: str, iteration: int, attempts: list[dict[str, Any]]) -> str:
    """An iteration's conversation as plain text: the system prompt, then each message."""
    lines: list[str] = []
    for conv in attempts:
        lines += [
            f"=== run {run_id} · iteration {iteration} · attempt {conv['attempt']} ===",
            "",
            "--- system ---",
            str(conv["system"]).rstrip(),
            f"(tools: {', '.join(str(t) for t in conv['tools']) or 'none'})",
        ]
        for message in conv["messages"]:
            lines += ["", f"--- {message.get('role')} ---"]
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            lines += [_block_text(block) for block in blocks or []]
        lines.append("")
    return "\n".join(lines).rstrip()


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", "")).rstrip()
    if kind == "tool_use":
        return f"[tool_use {block.get('name')} {block.get('id')}] {json.dumps(block.get('input'))}"
    if kind == "tool_result":
        error = " error" if block.get("is_error") else ""
        content = block.get("content")
        if isinstance(content, list):
            content = "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
        return f"[tool_result{error} {block.get('tool_use_id')}]\n{str(content).rstrip()}"
    if kind == "thinking":
        return f"[thinking] {str(block.get('thinking', '')).rstrip()}"
    return f"[{kind}]"


def conversation_command(start: Path, run: str, iteration: int, as_json: bool, out: TextIO) -> None:
    """Print what the model saw and said in one iteration of a run."""
    journal = _journal(start)
    if journal is None:
        raise UsageError("no runs recorded in this repository yet")
    try:
        run_id = journal.resolve(run)
        if run_id is None:
            raise UsageError(f"no run {run!r} in this repository; `ralph runs` lists them")
        attempts = journal.conversations(run_id, iteration)
    finally:
        journal.close()
    if not attempts:
        raise UsageError(
            f"run {run_id} kept no conversation for iteration {iteration} (it did not run "
            "there, ran an agent CLI, or was recorded by an older ralph); `ralph show "
            f"{run_id}` lists its iterations"
        )
    if as_json:
        out.write(json.dumps(attempts, indent=2) + "\n")
        return
    out.write(format_conversation(run_id, iteration, attempts) + "\n")

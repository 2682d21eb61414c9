"""The run report: rendering, report.md and the terminal table at the end of every run, the PR
body, and the journal's totals."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.errors import Interrupted, UsageError
from ralph.store.journal import Journal
from ralph.views.report import IterationRow, ReportCollector, RunSummary
from ralph.views.report_md import finish, load_report, render_markdown
from ralph.views.summary import print_summary
from tests.helpers import (
    clean_env,
    git,
    interrupt_in_iteration,
    make_repo,
    run_cli,
    write_script,
)
from tests.test_ui import RUN_ID, recorded_events

TOKEN = "DONE"


def _summary() -> RunSummary:
    collector = ReportCollector()
    for event in recorded_events():
        collector.handle(event)
    return collector.collected()


def test_markdown_report_has_every_section() -> None:
    s = _summary()
    s.limits = {"max_iterations": 10, "max_cost": 5.0, "max_tokens": None, "timeout": 3600}
    s.artifacts = ["sdlc/security-audit.md"]
    text = render_markdown(s)
    assert text.startswith(f"# ralph-loop run {RUN_ID}\n")
    assert "- Outcome: **completed** (exit 0) — promise HARDENED accepted" in text
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 2
    assert rows[0].startswith("| 1 | failed | Iteration 1: fixed the login handler \\| and more")
    assert "`11111111`" in rows[0] and "2: `app.py`, `sdlc/security-audit.md`" in rows[0]
    assert "(API error 500 after retries)" in rows[0]
    assert "| 21,000 | $0.0246 | 1m05s |" in rows[0]
    assert "| **total** | | | 4 | | **42,000** | **$0.0492** | **2m10s** |" in text
    assert (
        "- iteration 1: `HARDENED` rejected\n  - sdlc/security-audit.md: 3 unchecked item(s) \\| more"
        in text
    )
    assert "- iteration 2: `HARDENED` accepted" in text
    assert "| iterations | 2 | 10 |" in text and "| cost | $0.0492 | $5.00 |" in text
    assert "| tokens | 42,000 | no limit |" in text and "| time | 2m10s | 1h00m |" in text
    assert "- iteration -: stall — no progress in 2 iterations" in text
    assert "bubblewrap is not available" in text
    assert "- `sdlc/security-audit.md`" in text
    assert "ralph resume" not in text  # completed runs are not resumed


def test_pr_body_leaves_out_local_things_and_everything_is_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPS_TOKEN", "ops-token-value-123")
    s = RunSummary("r1", status="interrupted", exit_code=130, reason="interrupted by a signal")
    s.iterations = [IterationRow(1, "interrupted", "leaked ops-token-value-123", ["a.py"])]
    s.artifacts, s.resume = ["audit.md"], "ralph resume r1"
    local, pr = render_markdown(s), render_markdown(s, for_pr=True)
    assert "ralph resume r1" in local and "`audit.md`" in local
    assert "ralph resume" not in pr and "audit.md" not in pr and "### Artifacts" not in pr
    assert pr.startswith("## ralph-loop run `r1`")
    # The agent's words are escaped Markdown: the marker renders as [REDACTED].
    assert "ops-token-value-123" not in local + pr and "\\[REDACTED\\]" in pr


def test_collector_fills_in_a_crash_and_writes_without_a_journal(tmp_path: Path) -> None:
    collector = ReportCollector()
    events = recorded_events()
    for event in events[: next(i for i, e in enumerate(events) if e.name == "run_ended")]:
        collector.handle(event)
    out = io.StringIO()
    cfg = RunConfig(artifacts=["sdlc/*.md", "missing.md"])
    (tmp_path / "sdlc").mkdir()
    (tmp_path / "sdlc" / "audit.md").write_text("# audit\n")
    path = finish(collector, cfg, tmp_path, tmp_path, RuntimeError("disk full"), out)
    assert path == tmp_path / ".ralph" / "runs" / RUN_ID / "report.md"
    text = path.read_text()
    assert "- Outcome: **error** (exit 1) — RuntimeError: disk full" in text
    assert f"ralph resume {RUN_ID}" in text and "- `sdlc/audit.md`" in text
    assert "| **total** | | | 4 | | **42,000** | **$0.0492** |" in text  # summed iterations
    assert "error: RuntimeError: disk full" in out.getvalue()
    assert f"resume with: ralph resume {RUN_ID}" in out.getvalue()
    interrupted = ReportCollector()
    interrupted.handle(events[0])
    path = finish(interrupted, RunConfig(), tmp_path, tmp_path, Interrupted(2), io.StringIO())
    assert path is not None and "**interrupted** (exit 130)" in path.read_text()


def test_a_broken_report_never_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    collector = ReportCollector()
    collector.handle(recorded_events()[0])
    assert finish(collector, RunConfig(), blocker, blocker, None, io.StringIO()) is None
    assert "could not write the run report" in capsys.readouterr().err
    monkeypatch.setenv("RALPH_LOG_FORMAT", "json")  # in JSON log mode, a JSON record
    assert finish(collector, RunConfig(), blocker, blocker, None, io.StringIO()) is None
    rec = json.loads(capsys.readouterr().err)
    assert rec["event"] == "error" and "could not write the run report" in rec["message"]


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_terminal_table_fits_the_width(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    out = io.StringIO()
    print_summary(_summary(), out, Path("/tmp/report.md"))
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    # Names to copy (the branch, the report's path) are printed whole.
    copied = ("report: ", "branch: ")
    assert all(len(line) <= width for line in lines if not line.startswith(copied)), lines
    assert lines[-1] == "report: /tmp/report.md"
    row = next(line for line in lines if "failed" in line)
    assert "Iteration 1: f" in row and "21,000" in row


@pytest.mark.parametrize("width", [40, 120])
def test_a_long_run_shows_its_last_iterations_and_says_where_the_rest_are(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    s = RunSummary("r1", status="exhausted", exit_code=1, reason="max iterations reached")
    s.iterations = [IterationRow(n, "continue", summary=f"step {n}") for n in range(1, 51)]
    out = io.StringIO()
    print_summary(s, out)
    text = out.getvalue()
    assert "30 earlier iterations are in the report" in text
    assert "step 31" in text and "step 50" in text
    assert "step 30" not in text and "step 1 " not in text
    assert "max iterations reached" in text


def test_load_report_by_id_or_prefix(tmp_path: Path) -> None:
    run_dir = tmp_path / ".ralph" / "runs" / "20250101-000000-abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "report.md").write_text("# report\n")
    assert load_report(tmp_path, "20250101-000000-abcd") == "# report\n"
    assert load_report(tmp_path, "20250101-000000") == "# report\n"
    other = tmp_path / ".ralph" / "runs" / "20250101-000000-ffff"
    other.mkdir()
    (other / "report.md").write_text("# other\n")
    with pytest.raises(UsageError, match="ambiguous"):
        load_report(tmp_path, "20250101")
    with pytest.raises(UsageError, match="no report for run 'nope'"):
        load_report(tmp_path, "nope")


# --- a real scripted run ---------------------------------------------------------------------


def _turn(i: int) -> dict[str, Any]:
    return {
        "text": f"Step {i}.",
        "tools": [{"bash": {"command": f"echo {i} >> progress.txt"}}],
        "usage": {"input_tokens": 100 * i, "output_tokens": 10 * i, "cache_read_input_tokens": 50},
    }


def _project(tmp_path: Path, iterations: list[Any], front: str = "") -> tuple[Path, Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n"})
    # The price comes from the operator's prompt file, outside the repository.
    pricing = "pricing:\n  script: {input: 3, output: 15, cache_read: 0.3}\n"
    front = "---\n" + pricing + (front.removeprefix("---\n") if front else "---\n")
    prompt = tmp_path / "harden.md"
    prompt.write_text(f"{front}Harden it. Output <promise>{TOKEN}</promise> when done.\n")
    return repo, prompt, write_script(tmp_path / "session.yaml", iterations)


def test_a_finished_run_reports_each_iteration_and_the_journal_totals(tmp_path: Path) -> None:
    iterations = [
        [_turn(1), {"text": "Added the audit skeleton.", "usage": {"input_tokens": 10, "output_tokens": 5}}],
        [_turn(2), {"text": f"Claimed done early. <promise>{TOKEN}</promise>", "usage": {"input_tokens": 10, "output_tokens": 5}}],
        [
            {"text": "Writing.", "tools": [{"str_replace_based_edit_tool": {"command": "create", "path": "audit.md", "file_text": "# Audit\n"}}]},
            {"text": f"Audit written.\n<promise>{TOKEN}</promise>", "usage": {"input_tokens": 10, "output_tokens": 5}},
        ],
    ]  # fmt: skip
    repo, prompt, script = _project(tmp_path, iterations, "---\nartifacts: [audit.md]\n---\n")
    proc = run_cli(
        [str(prompt), "--model", f"script:{script}", "--repo", str(repo), "--sandbox", "none",
         "--max-iterations", "5", "--quiet"],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # quiet: nothing but the summary, and that is on stdout
    reports = list((repo / ".ralph" / "runs").glob("*/report.md"))
    assert len(reports) == 1
    run_id = reports[0].parent.name
    text = reports[0].read_text()
    assert load_report(repo, run_id) == text

    journal = Journal.open(repo, create=False)
    run = journal.get_run(run_id)
    journal.close()
    assert run is not None and run["iterations"] == 3
    for it in run["iterations_detail"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {it['number']} |"))
        assert it["summary"] in row and f"`{it['commit'][:8]}`" in row
        assert f"| {sum(it['usage'].values()):,} | ${it['cost_usd']:.4f} |" in row
    assert f"| **total** | | | 3 | | **{run['tokens']:,}** | **${run['cost_usd']:.4f}** |" in text
    # each verdict names the commit the gate judged, in a clean checkout
    judged = " (judged on a clean checkout of commit `{}`)"
    commits = {it["number"]: it["commit"][:12] for it in run["iterations_detail"]}
    assert (
        f"- iteration 2: `DONE` rejected{judged.format(commits[2])}\n  - audit.md: missing" in text
    )
    assert f"- iteration 3: `DONE` accepted{judged.format(commits[3])}" in text
    assert "| iterations | 3 | 5 |" in text and "- `audit.md`" in text
    # The terminal table, on stdout even in quiet mode.
    assert f"ralph run {run_id}" in proc.stdout
    assert "completed: promise DONE accepted" in proc.stdout
    assert f"report: {reports[0]}" in proc.stdout
    branch = git(repo, "branch", "--list", "ralph/*", "--format=%(refname:short)")
    assert git(repo, "rev-parse", "--short=8", branch) in text


def test_an_interrupted_run_reports_how_to_resume_and_the_resumed_run_reports_all(
    tmp_path: Path,
) -> None:
    first = [_turn(1), "First step done."]
    repo, prompt, script = _project(tmp_path, [first, [{"text": "Thinking slowly.", "sleep": 30}]])
    args = [str(prompt), "--model", f"script:{script}", "--repo", str(repo), "--sandbox", "none"]
    stdout = interrupt_in_iteration(args, cwd=repo, env=clean_env())
    (report,) = (repo / ".ralph" / "runs").glob("*/report.md")
    text = report.read_text()
    assert "**interrupted** (exit 130)" in text
    assert f"    ralph resume {report.parent.name}" in text
    assert f"resume with: ralph resume {report.parent.name}" in stdout
    # Resume (the model no longer stalls): the report holds both sessions' iterations.
    write_script(script, [first, [_turn(2), f"Finished. <promise>{TOKEN}</promise>"]])
    run_id = report.parent.name
    resumed = run_cli(["resume", run_id], cwd=repo, command="ralph")
    assert resumed.returncode == 0, resumed.stderr
    text = report.read_text()
    assert "**completed** (exit 0)" in text and "ralph resume" not in text
    assert "| 1 | ended | First step done. |" in text
    assert "| 2 | ended | Finished. |" in text
    assert f"ralph run {run_id}" in resumed.stdout


# --- escape codes in the agent's words; runs that never wrote their report ------------------

ESCAPED = "\x1b[31mFixed\x1b[0m the \x1b]0;pwned\x07title."


def _escaped_events() -> list[Any]:
    """The recorded run with an agent whose final messages carry escape codes, cut before
    run_ended (as a run killed at once leaves the journal)."""
    events = recorded_events()
    for event in events:
        if event.name == "iteration_ended":
            event.data["summary"] = ESCAPED
        if event.name == "guard_tripped":
            event.data["message"] = "stall \x1b[2J" + ESCAPED
    return [e for e in events if e.name != "run_ended"]


def _no_controls(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, repr(text)


def test_escape_codes_never_reach_the_report_or_the_terminal_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = ReportCollector()
    for event in _escaped_events():
        collector.handle(event)
    s = collector.collected()
    s.reason = "error: " + ESCAPED
    text = render_markdown(s)
    _no_controls(text)
    assert "| 2 | ended | Fixed the title. |" in text and "stall Fixed the title." in text
    assert "— error: Fixed the title." in text
    for width in (40, 120):  # the narrow lines and the table
        monkeypatch.setenv("COLUMNS", str(width))
        out = io.StringIO()
        print_summary(s, out)
        _no_controls(out.getvalue())
        assert "Fixed the title." in out.getvalue()


def test_show_cleans_escape_codes_and_rebuilds_a_missing_report(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    journal = Journal.open(repo)
    for event in _escaped_events():
        journal.handle(event)
    journal.close()
    shown = run_cli(["show", RUN_ID[:12], "--repo", str(repo)], cwd=repo, command="ralph")
    assert shown.returncode == 0, shown.stderr
    _no_controls(shown.stdout)
    assert "Fixed the title." in shown.stdout
    report = run_cli(["show", RUN_ID, "--report", "--repo", str(repo)], cwd=repo, command="ralph")
    assert report.returncode == 0, report.stderr
    _no_controls(report.stdout)
    assert report.stdout.startswith(f"# ralph-loop run {RUN_ID}\n")
    assert "rebuilt from the journal" in report.stdout
    assert "| 2 | ended | Fixed the title. |" in report.stdout
    assert f"    ralph resume {RUN_ID}" in report.stdout  # running, or crashed: resumable
    assert not (repo / ".ralph" / "runs" / RUN_ID / "report.md").exists()
    missing = run_cli(["show", "nope", "--report", "--repo", str(repo)], cwd=repo, command="ralph")
    assert missing.returncode == 2 and "no report for run 'nope'" in missing.stderr

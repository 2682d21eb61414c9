"""The hardening document's checklist (40 items, four lists), what a campaign made of each
item, and the campaign's report (`.ralph/campaigns/<id>/report.md`, also its PR body).

Coverage is read from the campaign branch's tip: each item's box in the progress file of the
prompt that covers it (`tests/test_prompts_content.py` checks that every item has its box
there). A box is "done" when ticked, "N/A" when it carries `N/A: reason`, and "task" when its
line names a remediation task (`SEC-004`) that the task list holds: the item became a task
(with the task's status). An open box is "open"; a file not written is "not audited".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..git import gitrun
from ..store.journal import Journal
from ..views.markdown import code
from ..views.report_md import cell
from .campaign import find_campaign, report_dir
from .gate import _NA
from .taskpins import CAMPAIGN_FILES, blob, committed_file, operators_choice

# The four checklists of the hardening document ("Hardening Checklist"), each item with the
# phase whose progress file has its box and a phrase of that box.
CHECKLIST: dict[str, list[tuple[str, str, str]]] = {
    "Security Hardening": [
        ("Penetration test completed", "security", "Penetration test"),
        ("OWASP Top 10 addressed", "security", "OWASP Top 10"),
        ("Dependency vulnerabilities patched", "security", "Dependency vulnerabilities"),
        ("Secrets rotated and vaulted", "security", "Secrets rotated"),
        ("WAF/DDoS protection enabled", "security", "WAF/DDoS"),
        ("Security headers configured", "security", "Security headers"),
        ("Input validation comprehensive", "security", "Input validation"),
        ("Output encoding in place", "security", "Output encoding"),
        ("CORS properly configured", "security", "CORS"),
        ("Rate limiting implemented", "security", "Rate limiting"),
    ],
    "Reliability Hardening": [
        ("99.9% uptime architecture designed", "reliability", "99.9% uptime"),
        ("Auto-scaling configured", "reliability", "Auto-scaling"),
        ("Database failover tested", "reliability", "Database failover"),
        ("Backup/restore verified", "reliability", "Backup/restore"),
        ("Disaster recovery plan documented", "reliability", "Disaster recovery plan"),
        ("Load testing completed", "reliability", "Load testing"),
        ("Circuit breakers implemented", "reliability", "Circuit breakers"),
        ("Graceful degradation planned", "reliability", "Graceful degradation"),
        ("Health checks comprehensive", "reliability", "Health checks"),
        ("Connection pooling optimized", "reliability", "Connection pooling"),
    ],
    "Observability Hardening": [
        ("APM with distributed tracing", "observability", "distributed tracing"),
        ("Structured logging (JSON)", "observability", "Structured logging (JSON)"),
        ("Log aggregation configured", "observability", "Log aggregation"),
        ("Error tracking (Sentry, etc.)", "observability", "Error tracking"),
        ("Real user monitoring", "observability", "Real user monitoring"),
        ("Synthetic monitoring", "observability", "Synthetic monitoring"),
        ("Custom dashboards created", "observability", "dashboards"),
        ("SLOs/SLAs defined", "observability", "SLOs/SLAs"),
        ("Alerting rules comprehensive", "observability", "Alerting rules"),
        ("On-call rotation established", "incident-response", "On-call rotation"),
    ],
    "Operational Hardening": [
        ("Runbooks for all critical paths", "incident-response", "all critical paths"),
        ("Incident response plan tested", "incident-response", "plan tested"),
        ("Post-mortem process defined", "incident-response", "Post-mortem process"),
        ("Change management documented", "reliability", "Change management"),
        ("Rollback procedures verified", "reliability", "Rollback procedures"),
        ("Communication plan ready", "incident-response", "Communication plan"),
        ("Status page configured", "incident-response", "Status page"),
        ("Documentation complete", "reliability", "Documentation complete"),
        ("Team trained", "incident-response", "Team trained"),
        ("Compliance verified (if applicable)", "incident-response", "Compliance verified"),
    ],
}

PROGRESS_FILES = {
    "security": "sdlc/security-audit.md",
    "reliability": "sdlc/reliability.md",
    "observability": "sdlc/observability.md",
    "incident-response": "sdlc/incident-response.md",
}
_BOX = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+\[([ xX])\]\s*(.*)$", re.M)
_TASK_ID = re.compile(r"\b([A-Z]{2,5}-\d+(?:\.\d+)*)\b")


@dataclass
class Coverage:
    """What became of one checklist item."""

    section: str
    item: str
    phase: str
    state: str  # done | task | n/a | open | not audited
    detail: str = ""  # the N/A reason, the task and its status, or the box's text


def _na_reason(label: str) -> str | None:
    match = _NA.search(label)
    if not match:
        return None
    return label[match.end() :].strip(" :-—–") or label


def coverage(files: dict[str, str | None], tasks: dict[str, dict[str, Any]]) -> list[Coverage]:
    """Each of the 40 items: `files` maps a progress file's path to its text (None: not
    written); `tasks` maps a remediation task's id to its title and status."""
    out: list[Coverage] = []
    for section, items in CHECKLIST.items():
        for item, phase, phrase in items:
            text = files.get(PROGRESS_FILES[phase])
            if text is None:
                out.append(Coverage(section, item, phase, "not audited"))
                continue
            boxes = [(m.group(1) != " ", m.group(2).strip()) for m in _BOX.finditer(text)]
            found = [(ticked, label) for ticked, label in boxes if phrase.lower() in label.lower()]
            if not found:
                out.append(_section_coverage(section, item, phase, phrase, text))
                continue
            ticked, label = found[0]
            filed = [t for t in _TASK_ID.findall(label) if t in tasks]
            na = _na_reason(label)
            if filed and (not ticked or tasks[filed[0]].get("status") != "done"):
                task = tasks[filed[0]]
                out.append(Coverage(section, item, phase, "task",
                                    f"{filed[0]} ({task.get('status')})"))  # fmt: skip
            elif ticked:
                out.append(Coverage(section, item, phase, "done", label))
            elif na is not None:
                out.append(Coverage(section, item, phase, "n/a", na))
            else:
                out.append(Coverage(section, item, phase, "open", label))
    return out


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _section_coverage(section: str, item: str, phase: str, phrase: str, text: str) -> Coverage:
    """An item that is a heading over boxes (the security audit's "OWASP Top 10" lists):
    done when every box under each such heading is ticked or N/A."""
    lines, boxes, level = text.splitlines(), [], 0
    for line in lines:
        heading = _HEADING.match(line)
        if heading:
            depth = len(heading.group(1))
            if phrase.lower() in heading.group(2).lower():
                level = depth
            elif level and depth <= level:
                level = 0
            continue
        box = _BOX.match(line)
        if level and box:
            boxes.append((box.group(1) != " ", box.group(2).strip()))
    if not boxes:
        return Coverage(section, item, phase, "open", "no box in the progress file")
    left = [label for ticked, label in boxes if not ticked and _na_reason(label) is None]
    if left:
        return Coverage(section, item, phase, "open", f"{len(left)} of {len(boxes)} boxes open")
    return Coverage(section, item, phase, "done", f"{len(boxes)} boxes")


# --- reading the campaign's branch ---------------------------------------------------------


def branch_tasks(repo: Path, rev: str, base: str | None = None) -> tuple[str | None, list[Any]]:
    """The remediation task list at `rev`: its file name and tasks (ralph's Task objects); the
    one the operator had at the campaign's base commit `base`, as remediate works it."""
    chosen = operators_choice(repo, base) if base else None
    for name in [chosen] if chosen else CAMPAIGN_FILES:
        found = committed_file(repo, rev, name)
        if found.text is not None:
            return name, found.file.tasks if found.file is not None else []
    return None, []


@dataclass
class CampaignFacts:
    """What the report says, gathered from the journal and the branch."""

    campaign: dict[str, Any]
    runs: list[dict[str, Any]]
    coverage: list[Coverage]
    task_file: str | None
    tasks: list[dict[str, Any]]
    commits: int


def gather(main_repo: Path, campaign_id: str) -> CampaignFacts | None:
    journal = Journal.open(main_repo, create=False)
    try:
        row = journal.get_campaign(campaign_id)
        if row is None:
            return None
        runs = []
        ended: dict[str, dict[str, Any]] = {}
        for run in journal.campaign_runs(campaign_id):
            detail = journal.get_run(run["id"]) or run
            detail["phase"] = run["phase"]
            runs.append(detail)
            for event in journal.conn.execute(
                "SELECT data FROM events WHERE run_id = ? AND name = 'task_ended' ORDER BY id",
                (run["id"],),
            ).fetchall():
                data = json.loads(event["data"] or "{}")
                ended[str(data.get("id"))] = data
    finally:
        journal.close()
    branch, base = row.get("branch"), row.get("base_commit")
    rev = f"refs/heads/{branch}" if branch else "HEAD"
    files = {path: blob(main_repo, rev, path) for path in PROGRESS_FILES.values()}
    task_file, task_list = branch_tasks(main_repo, rev, base)
    tasks = []
    for task in task_list:
        seen = ended.get(task.id, {})
        tasks.append(
            {
                "id": task.id,
                "title": task.title,
                "status": task.status,
                "reason": task.reason or str(seen.get("reason") or ""),  # e.g. whose verify
                "commit": seen.get("commit"),
                "cost_usd": seen.get("cost_usd"),
            }
        )
    commits = 0
    if branch and base:
        counted = gitrun.run(main_repo, "rev-list", "--count", f"{base}..{rev}", check=False)
        commits = int(counted.stdout.strip() or 0) if counted.returncode == 0 else 0
    by_id = {t["id"]: t for t in tasks}
    return CampaignFacts(row, runs, coverage(files, by_id), task_file, tasks, commits)


# --- the report ------------------------------------------------------------------------------


def _money(value: Any) -> str:
    return "?" if value is None else f"${float(value):.2f}"


def render_campaign_markdown(main_repo: Path, campaign_id: str, for_pr: bool = False) -> str:
    """The campaign's report: per phase the outcome, cost and commits; the 40 items'
    coverage; the remediation tasks."""
    facts = gather(main_repo, campaign_id)
    if facts is None:
        return f"No campaign {campaign_id} in the journal.\n"
    c = facts.campaign
    cost_known = all(r.get("cost_usd") is not None for r in facts.runs)
    total = sum(float(r.get("cost_usd") or 0) for r in facts.runs)
    lines = [
        f"# Hardening campaign {code(campaign_id)}",
        "",
        f"**Outcome:** {cell(c.get('status'))}: {cell(c.get('exit_reason') or 'running')}",
        "",
        f"Branch {code(str(c.get('branch') or '-'))} from "
        f"{code(str(c.get('base_commit') or '-')[:8])} · {facts.commits} commit(s) · "
        f"cost {_money(total if cost_known else None)} · phases: "
        + ", ".join(code(p) for p in c.get("phases") or []),
        "",
        "## Phases",
        "",
        "| Phase | Outcome | Iterations | Cost | Commits | Run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ran = {r["phase"]: r for r in facts.runs}
    for phase in c.get("phases") or []:
        run = ran.get(phase)
        if run is None:
            lines.append(
                f"| {phase} | not run (skipped, or the campaign stopped before it) | - | - | - | - |"
            )
            continue
        outcome = f"{run.get('status')}: {run.get('reason') or ''}"
        lines.append(
            f"| {phase} | {cell(outcome, 160)} | {run.get('iterations') or 0} | "
            f"{_money(run.get('cost_usd'))} | {len(run.get('commits') or [])} | "
            f"{code(str(run['id']), table=True)} |"
        )
    counts: dict[str, int] = {}
    for cov in facts.coverage:
        counts[cov.state] = counts.get(cov.state, 0) + 1
    order = ("done", "task", "n/a", "open", "not audited")
    names = {"task": "became task(s)", "n/a": "N/A"}
    summary = ", ".join(f"{counts[s]} {names.get(s, s)}" for s in order if counts.get(s))
    lines += [
        "",
        "## Checklist coverage",
        "",
        f"The hardening document's {len(facts.coverage)} items: {summary}.",
    ]
    for section in CHECKLIST:
        lines += ["", f"### {section}", "", "| Item | Phase | Coverage |", "| --- | --- | --- |"]
        for cov in (x for x in facts.coverage if x.section == section):
            state = {"task": "became task", "n/a": "N/A"}.get(cov.state, cov.state)
            detail = f": {cell(cov.detail, 120)}" if cov.detail and cov.state != "done" else ""
            lines.append(f"| {cov.item} | {cov.phase} | {state}{detail} |")
    lines += ["", "## Remediation tasks", ""]
    if not facts.tasks:
        lines.append("No remediation task was filed.")
    else:
        lines += [
            f"From {code(str(facts.task_file))} on the branch.",
            "",
            "| Task | Title | Status | Commit | Cost |",
            "| --- | --- | --- | --- | --- |",
        ]
        for t in facts.tasks:
            status = t["status"] + (f": {t['reason']}" if t.get("reason") else "")
            commit = code(str(t["commit"])[:8], table=True) if t.get("commit") else "-"
            cost = _money(t["cost_usd"]) if t.get("cost_usd") is not None else "-"
            lines.append(
                f"| {cell(t['id'], 40)} | {cell(t['title'], 80)} | {cell(status, 120)} | "
                f"{commit} | {cost} |"
            )
    if not for_pr:
        lines += ["", "Each phase's own report: `ralph show RUN --report` (runs above)."]
    return "\n".join(lines) + "\n"


def write_campaign_report(main_repo: Path, campaign_id: str) -> Path:
    path = report_dir(main_repo, campaign_id) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_campaign_markdown(main_repo, campaign_id), encoding="utf-8")
    return path


def campaign_report(start: Path, ref: str) -> str:
    """`ralph show CAMPAIGN`: the campaign's report.md, made now if it has none yet (it is
    running, or its process died)."""
    main, row = find_campaign(start, ref)
    campaign_id = row["id"]
    path = report_dir(main, campaign_id) / "report.md"
    if path.is_file() and not path.is_symlink():
        return path.read_text(encoding="utf-8")
    return render_campaign_markdown(main, campaign_id)

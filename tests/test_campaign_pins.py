"""A campaign's remediate phase pins the operator's tasks from the campaign's base commit: an
audit phase's agent that loosens an operator's verify line, or marks the task done, in
`.taskmaster/tasks/tasks.json` before remediate begins changes nothing; the tasks the audits
filed are worked with the agents' own verify and are marked as such."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ralph.store.journal import Journal
from tests.helpers import git
from tests.test_campaign import REMEDIATION, audit_file, campaign_runs, step
from tests.test_campaign import harden as harden  # the fixture: a campaign on a fresh repository
from tests.test_loop_runs import create

TASKS = ".taskmaster/tasks/tasks.json"
AUTH = "test -f tests/test_auth.py"
OPERATOR = {"tasks": [
    {"id": 1, "title": "Check the session token", "status": "pending", "priority": "high",
     "verify": AUTH},
    {"id": 2, "title": "Log failed logins", "status": "pending", "priority": "high"},
]}  # fmt: skip


def audit(filed: bool) -> list[Any]:
    """The security phase: its audit, and the operator's tasks loosened (task 1's verify
    `true`, task 2 marked done); with `filed`, a task of its own (3), else task 1 marked done
    too."""
    loose = json.loads(json.dumps(OPERATOR))
    loose["tasks"][0]["verify"] = "true"
    loose["tasks"][1]["status"] = "done"
    if not filed:
        loose["tasks"][0]["status"] = "done"
    if filed:
        loose["tasks"].append({"id": 3, "title": "Rate limiting", "status": "pending",
                               "verify": "test -f limit.py"})  # fmt: skip
    path, text = audit_file("security")
    tools = [
        create(path, text),
        create(TASKS, json.dumps(loose, indent=2) + "\n"),
        create("sdlc/remediation-tasks.md", f"# Remediation tasks\n\nIn {TASKS}.\n"),
    ]
    return [step(tools, "Audited. <promise>SECURITY_AUDIT_COMPLETE</promise>")]


def operator_repo(harden: Any) -> Path:
    repo: Path = harden.repo
    (repo / TASKS).parent.mkdir(parents=True)
    (repo / TASKS).write_text(json.dumps(OPERATOR, indent=2) + "\n")
    git(repo, "add", TASKS)
    git(repo, "commit", "-qm", "the operator's tasks")
    return repo


def events(repo: Path, run_id: str, name: str) -> list[dict[str, Any]]:
    journal = Journal.open(repo, create=False)
    try:
        rows = journal.conn.execute(
            "SELECT data FROM events WHERE run_id = ? AND name = ? ORDER BY id", (run_id, name)
        ).fetchall()
    finally:
        journal.close()
    return [json.loads(row[0]) for row in rows]


def test_remediate_judges_the_operators_tasks_by_the_campaigns_base_not_the_audits_edits(
    harden: Any,
) -> None:
    repo = operator_repo(harden)
    remediate = [
        step([create("auth.py")], "Fixed. <task-done>1</task-done>"),
        ["Logged. <task-done>2</task-done>"],
        step([create("limit.py")], "Limited. <task-done>3</task-done>"),
    ]
    result, repo, _, _ = harden({"security": audit(filed=True), "remediate": remediate},
                                phases="security,remediate", task_failures=1,
                                phase_max_iterations=3)  # fmt: skip
    assert [(o.phase, o.status) for o in result.phases] == [
        ("security", "completed"), ("remediate", "completed"),
    ]  # fmt: skip
    run_id = campaign_runs(repo, result.campaign_id)[-1]["id"]
    ended = {e["id"]: e for e in events(repo, run_id, "task_ended")}
    # Task 1: the operator's verify, not the audit agent's `true`.
    assert ended["1"]["status"] == "blocked"
    assert f"`{AUTH}` exited 1" in ended["1"]["reason"]
    # Task 2: the audit agent's "done" did not close it; the runner's iteration did.
    assert (ended["2"]["status"], ended["2"]["reason"]) == ("done", "")
    # Task 3, filed by the audit: its (the agents') verify ran, and it is marked so.
    assert ended["3"]["status"] == "done"
    assert "filed by the campaign's agents" in ended["3"]["reason"]
    (listed,) = events(repo, run_id, "task_list")
    assert listed["tasks"]["1"] == {"title": "Check the session token", "verify": AUTH}
    assert listed["tasks"]["3"]["by"] == "agents"
    warned = [w["message"] for w in events(repo, run_id, "warning")]
    assert any("task(s) 3 were filed by the campaign's agents" in w for w in warned)
    assert any("task 1's verify was changed to `true`" in w for w in warned)
    # The checklist the audit wrote (the gate's artifact) is a note, not tasks left unworked.
    assert not any("created by the campaign's audit phases" in w for w in warned)
    # The branch has the operator's verify back; the report marks the agents' task.
    branch_tasks = json.loads(git(repo, "show", f"{result.branch}:{TASKS}"))["tasks"]
    assert branch_tasks[0]["verify"] == AUTH
    assert "1 filed by the campaign's agents" in result.phases[-1].reason
    row = next(line for line in result.report.read_text().splitlines() if line.startswith("| 3 |"))
    assert "filed by the campaign's agents" in row


def test_remediate_is_not_skipped_when_an_audit_marked_the_operators_tasks_done(
    harden: Any,
) -> None:
    """The file has no open task as remediate would begin, but the operator's two were open
    at the campaign's base: remediate runs and works them."""
    operator_repo(harden)
    remediate = [["Done. <task-done>1</task-done>"], ["Logged. <task-done>2</task-done>"]]
    result, repo, _, _ = harden({"security": audit(filed=False), "remediate": remediate},
                                phases="security,remediate", task_failures=1,
                                phase_max_iterations=2)  # fmt: skip
    assert [(o.phase, o.status) for o in result.phases] == [
        ("security", "completed"), ("remediate", "completed"),
    ]  # fmt: skip
    run_id = campaign_runs(repo, result.campaign_id)[-1]["id"]
    ended = {e["id"]: e["status"] for e in events(repo, run_id, "task_ended")}
    assert ended == {"1": "blocked", "2": "done"}


CHECKLIST = "sdlc/remediation-tasks.md"


def checklist_repo(harden: Any) -> Path:
    """The operator's tasks in the Markdown checklist, committed before the campaign."""
    repo: Path = harden.repo
    (repo / CHECKLIST).parent.mkdir(parents=True)
    (repo / CHECKLIST).write_text(REMEDIATION)
    git(repo, "add", CHECKLIST)
    git(repo, "commit", "-qm", "the operator's tasks")
    return repo


def test_an_audit_that_creates_a_taskmaster_file_does_not_steer_remediate_off_the_operators(
    harden: Any,
) -> None:
    """The operator's tasks are in the checklist at the campaign's base; the security phase's
    agent creates .taskmaster/tasks/tasks.json (which remediate would take first): remediate
    still works the operator's checklist, and says the other file's tasks are not worked."""
    checklist_repo(harden)
    path, text = audit_file("security")
    decoy = {"tasks": [{"id": 1, "title": "Nothing to see", "status": "pending"}]}
    security = [step([create(path, text), create(TASKS, json.dumps(decoy))],
                     "Audited. <promise>SECURITY_AUDIT_COMPLETE</promise>")]  # fmt: skip
    remediate = [
        step([create("limit.py")], "Limited. <task-done>SEC-001</task-done>"),
        ["Rotated. <task-done>SEC-002</task-done>"],
    ]
    result, repo, _, _ = harden({"security": security, "remediate": remediate},
                                phases="security,remediate", phase_max_iterations=2)  # fmt: skip
    run_id = campaign_runs(repo, result.campaign_id)[-1]["id"]
    ended = {e["id"]: e["status"] for e in events(repo, run_id, "task_ended")}
    assert ended == {"SEC-001": "done", "SEC-002": "done"}
    assert result.phases[-1].status == "completed"
    warned = [w["message"] for w in events(repo, run_id, "warning")]
    assert any(f"{TASKS} was created by the campaign's audit phases" in w for w in warned)
    assert f"{TASKS}, created by the audit phases, not worked" in result.phases[-1].reason
    report = result.report.read_text()
    assert f"From `{CHECKLIST}` on the branch." in report
    assert "Nothing to see" not in report

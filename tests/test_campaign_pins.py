"""A campaign's remediate phase pins the operator's tasks from the campaign's base commit: an
audit phase's agent that loosens an operator's verify line, or marks the task done, in
`.taskmaster/tasks/tasks.json` before remediate begins changes nothing; the tasks the audits
filed are worked with the agents' own verify and are marked as such."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ralph.run import taskfiles
from ralph.run.taskpins import operators_back
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


def test_an_operators_task_an_audit_removed_is_put_back_and_worked(harden: Any) -> None:
    """The security phase's agent rewrites the operator's checklist without SEC-002 (and with a
    finding of its own): remediate puts SEC-002 back, as the operator wrote it, and works it."""
    checklist_repo(harden)
    path, text = audit_file("security")
    edited = REMEDIATION.split("- [ ] SEC-002")[0] + "- [ ] SEC-010: Pin the base image\n"
    security = [step([create(path, text), create(CHECKLIST, edited)],
                     "Audited. <promise>SECURITY_AUDIT_COMPLETE</promise>")]  # fmt: skip
    remediate = [
        step([create("limit.py")], "Limited. <task-done>SEC-001</task-done>"),
        ["Pinned. <task-done>SEC-010</task-done>"],
        ["Rotated. <task-done>SEC-002</task-done>"],
    ]
    result, repo, _, _ = harden({"security": security, "remediate": remediate},
                                phases="security,remediate", phase_max_iterations=3)  # fmt: skip
    run_id = campaign_runs(repo, result.campaign_id)[-1]["id"]
    ended = {e["id"]: e["status"] for e in events(repo, run_id, "task_ended")}
    assert ended == {"SEC-001": "done", "SEC-010": "done", "SEC-002": "done"}
    warned = [w["message"] for w in events(repo, run_id, "warning")]
    assert any("task(s) SEC-002 of the operator's task file were removed" in w for w in warned)
    on_branch = git(repo, "show", f"{result.branch}:{CHECKLIST}")
    assert "- [x] SEC-002: Rotate the leaked key" in on_branch
    assert "- [x] SEC-010: Pin the base image" in on_branch


def test_an_operators_task_file_an_audit_deleted_is_restored_and_worked(harden: Any) -> None:
    """The security phase's agent deletes the operator's .taskmaster/tasks/tasks.json:
    remediate is not skipped; it restores the file from the campaign's base and works it."""
    operator_repo(harden)
    path, text = audit_file("security")
    note = create(CHECKLIST, f"# Remediation tasks\n\nIn {TASKS}.\n")  # the gate's artifact
    security = [step([create(path, text), note, {"bash": {"command": f"rm {TASKS}"}}],
                     "Audited. <promise>SECURITY_AUDIT_COMPLETE</promise>")]  # fmt: skip
    remediate = [
        step([create("tests/test_auth.py")], "Checked. <task-done>1</task-done>"),
        ["Logged. <task-done>2</task-done>"],
    ]
    result, repo, _, _ = harden({"security": security, "remediate": remediate},
                                phases="security,remediate", phase_max_iterations=2)  # fmt: skip
    assert [(o.phase, o.status) for o in result.phases] == [
        ("security", "completed"), ("remediate", "completed"),
    ]  # fmt: skip
    run_id = campaign_runs(repo, result.campaign_id)[-1]["id"]
    ended = {e["id"]: e["status"] for e in events(repo, run_id, "task_ended")}
    assert ended == {"1": "done", "2": "done"}
    warned = [w["message"] for w in events(repo, run_id, "warning")]
    assert any("the operator's, as the campaign began, restored" in w for w in warned)
    assert not any("created by the campaign's audit phases" in w for w in warned)  # a note alone
    branch_tasks = json.loads(git(repo, "show", f"{result.branch}:{TASKS}"))["tasks"]
    assert [(t["id"], t["status"], t.get("verify")) for t in branch_tasks] == [
        (1, "done", AUTH), (2, "done", None),
    ]  # fmt: skip


def test_operators_back_puts_subtasks_and_parents_back_or_names_those_it_cannot(
    tmp_path: Path,
) -> None:
    """Taskmaster: a removed subtask goes back under its parent, a removed parent with its
    subtasks; a file an audit turned into another format cannot take them: named, not worked."""
    path = tmp_path / "tasks.json"
    began = {"tasks": [
        {"id": 1, "title": "Auth", "subtasks": [{"id": 1, "title": "Token"},
                                                {"id": 2, "title": "Expiry", "verify": AUTH}]},
        {"id": 2, "title": "Logging", "subtasks": [{"id": 1, "title": "Failed logins"}]},
        {"id": 3, "title": "Limits"},
    ]}  # fmt: skip
    now = {"tasks": [{"id": 1, "title": "Auth", "subtasks": [{"id": 1, "title": "Token"}]},
                     {"id": 9, "title": "Filed by the audit"}]}  # fmt: skip
    operator = taskfiles.parse(path, json.dumps(began))
    back = operators_back(taskfiles.parse(path, json.dumps(now)), operator, None)
    assert back.gone == ["1.2", "2.1", "3"] and back.lost == []
    assert back.text is not None
    fixed = taskfiles.parse(path, back.text)
    assert [t.id for t in fixed.tasks] == ["1.1", "1.2", "9", "2.1", "3"]
    assert fixed.get("1.2").verify == AUTH  # type: ignore[union-attr]
    assert "put back into tasks.json" in back.note
    prd = {"userStories": [{"id": "1.1", "title": "Token"}]}
    other = operators_back(taskfiles.parse(path, json.dumps(prd)), operator, None)
    assert other.text is None and other.lost == ["1.2", "2.1", "3"]
    assert other.note.endswith("cannot be put back into tasks.json: not worked")


def test_a_checklist_with_no_tasks_at_the_base_is_no_operator_task_not_an_unreadable_file(
    harden: Any,
) -> None:
    """A repository whose earlier campaign left the checklist as a note (the security gate
    wants the file; no task was open): the next campaign's audit files a task there, and
    remediate works it as the agents' own, rather than refuse the file as unreadable."""
    repo: Path = harden.repo
    (repo / CHECKLIST).parent.mkdir(parents=True)
    (repo / CHECKLIST).write_text("# Remediation tasks\n\nNothing open: all fixed.\n")
    git(repo, "add", CHECKLIST)
    git(repo, "commit", "-qm", "the last campaign's note")
    path, text = audit_file("security")
    filed = "# Remediation tasks\n\n- [ ] SEC-009: Rate limiting\n  verify: test -f limit.py\n"
    security = [step([create(path, text), create(CHECKLIST, filed)],
                     "Audited. <promise>SECURITY_AUDIT_COMPLETE</promise>")]  # fmt: skip
    remediate = [step([create("limit.py")], "Limited. <task-done>SEC-009</task-done>")]
    result, repo, _, _ = harden({"security": security, "remediate": remediate},
                                phases="security,remediate", task_failures=1,
                                phase_max_iterations=1)  # fmt: skip
    assert [(o.phase, o.status) for o in result.phases] == [
        ("security", "completed"), ("remediate", "completed"),
    ]  # fmt: skip
    run_id = campaign_runs(repo, result.campaign_id)[-1]["id"]
    (ended,) = events(repo, run_id, "task_ended")
    assert (ended["id"], ended["status"]) == ("SEC-009", "done")
    assert "filed by the campaign's agents" in ended["reason"]

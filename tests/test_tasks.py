"""Task files: reading the three formats, choosing the next task, writing status back in the
file's own layout, and refusing malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ralph.errors import UsageError
from ralph.run import taskfiles, tasks

TASKMASTER = {
    "tasks": [
        {
            "id": 1,
            "title": "Parameterise the search query",
            "description": "SQL injection in /search",
            "details": "Use placeholders.",
            "testStrategy": "A test posts a quote.",
            "priority": "medium",
            "dependencies": [],
            "status": "pending",
            "subtasks": [],
        },
        {
            "id": 2,
            "title": "Add security headers",
            "priority": "high",
            "dependencies": [1],
            "status": "pending",
            "verify": "python3 -m pytest -q tests/test_headers.py",
        },
        {
            "id": 3,
            "title": "Rate limiting",
            "priority": "high",
            "dependencies": [],
            "status": "pending",
            "subtasks": [
                {"id": 1, "title": "Limiter", "status": "pending", "dependencies": []},
                {"id": 2, "title": "Wire it", "status": "pending", "dependencies": [1]},
            ],
        },
    ]
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_taskmaster_order_follows_dependencies_then_priority_then_position(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks.json", json.dumps(TASKMASTER, indent=2) + "\n")
    tf = taskfiles.load(path)
    assert [t.id for t in tf.tasks] == ["1", "2", "3.1", "3.2"]
    # 2 is high priority but waits for 1; 3.1 is high and ready.
    assert tf.next_task().id == "3.1"  # type: ignore[union-attr]
    tf.set_status("3.1", "done")
    assert tf.next_task().id == "3.2"  # type: ignore[union-attr]
    tf.set_status("3.2", "done")
    assert tf.next_task().id == "1"  # type: ignore[union-attr]
    tf.set_status("1", "done")
    nxt = tf.next_task()
    assert nxt is not None and nxt.id == "2" and nxt.verify.startswith("python3 -m pytest")
    tf.set_status("2", "done")
    assert tf.next_task() is None and not tf.open_tasks()


def test_taskmaster_status_is_written_back_in_the_files_layout(tmp_path: Path) -> None:
    original = json.dumps(TASKMASTER, indent=2) + "\n"
    path = write(tmp_path, "tasks.json", original)
    tf = taskfiles.load(path)
    tf.set_status("3.1", "done")
    tf.set_status("1", "blocked", "needs a database migration")
    tf.save()
    text = path.read_text()
    data = json.loads(text)
    assert data["tasks"][2]["subtasks"][0]["status"] == "done"
    assert data["tasks"][2]["status"] == "in-progress"  # the parent follows its subtasks
    assert data["tasks"][0]["status"] == "blocked"
    assert data["tasks"][0]["blockedReason"] == "needs a database migration"
    # Same indentation, key order and trailing newline: only the changed lines differ.
    before = {line.rstrip(",") for line in original.splitlines()}
    changed = [a for a in text.splitlines() if a.rstrip(",") not in before]
    assert all('"status"' in line or '"blockedReason"' in line for line in changed), changed
    assert list(data["tasks"][1]) == list(TASKMASTER["tasks"][1])
    assert text.endswith("}\n")


def test_taskmaster_parent_done_when_all_subtasks_are(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks.json", json.dumps(TASKMASTER, indent=2))
    tf = taskfiles.load(path)
    tf.set_status("3.1", "done")
    tf.set_status("3.2", "done")
    tf.save()
    data = json.loads(path.read_text())
    assert data["tasks"][2]["status"] == "done"
    assert not path.read_text().endswith("\n")  # it had none


def test_tagged_taskmaster_uses_the_current_tag(tmp_path: Path) -> None:
    tagged = {
        "master": {"tasks": [{"id": 1, "title": "A", "status": "done"}], "metadata": {}},
        "feature": {"tasks": [{"id": 7, "title": "B", "status": "pending"}], "metadata": {}},
    }
    path = write(tmp_path, ".taskmaster/tasks/tasks.json", json.dumps(tagged, indent=2))
    assert taskfiles.load(path).next_task() is None  # master: all done
    write(tmp_path, ".taskmaster/state.json", json.dumps({"currentTag": "feature"}))
    tf = taskfiles.load(path)
    assert tf.next_task().id == "7"  # type: ignore[union-attr]
    tf.set_status("7", "done")
    tf.save()
    assert json.loads(path.read_text())["feature"]["tasks"][0]["status"] == "done"


def test_a_task_waiting_on_a_blocked_one_is_blocked_with_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks.json", json.dumps(TASKMASTER, indent=2))
    tf = taskfiles.load(path)
    tf.set_status("1", "blocked", "no database")
    for sub in ("3.1", "3.2"):
        tf.set_status(sub, "done")
    assert tf.next_task() is None
    two = tf.get("2")
    assert two is not None and two.status == "blocked" and "depends on 1" in two.reason


def test_prd_json_user_stories(tmp_path: Path) -> None:
    prd = {
        "project": "shop",
        "branchName": "ralph/shop",
        "userStories": [
            {"id": "US-002", "title": "Login rate limit", "priority": 2, "passes": False,
             "acceptanceCriteria": ["429 after 5 tries"], "notes": ""},
            {"id": "US-001", "title": "CSRF tokens", "priority": 1, "passes": False,
             "acceptanceCriteria": ["forms carry a token"], "notes": ""},
            {"id": "US-003", "title": "Done already", "priority": 0, "passes": True, "notes": ""},
        ],
    }  # fmt: skip
    path = write(tmp_path, "prd.json", json.dumps(prd, indent=4) + "\n")
    tf = taskfiles.load(path)
    assert tf.kind == "prd"
    first = tf.next_task()
    assert first is not None and first.id == "US-001" and "forms carry a token" in first.details
    tf.set_status("US-001", "done")
    tf.set_status("US-002", "blocked", "needs Redis")
    tf.save()
    data = json.loads(path.read_text())
    assert [s["passes"] for s in data["userStories"]] == [False, True, True]
    assert data["userStories"][0]["status"] == "blocked"
    assert data["userStories"][0]["blockedReason"] == "needs Redis"
    assert path.read_text().startswith('{\n    "project"')  # four-space layout kept
    assert taskfiles.load(path).next_task() is None


CHECKLIST = """\
# Remediation tasks

Filed by the security audit.

- [ ] SEC-1: Parameterise the search query
  The /search handler builds SQL with f-strings.
  verify: `python3 -m pytest -q tests/test_search.py`
- [x] SEC-2: Remove the debug endpoint
- [ ] SEC-3: Add rate limiting
  depends: SEC-1
  priority: high

```
- [ ] not a task: inside a fence
```
- [ ] Document the incident process
"""


def test_markdown_checklist_items_ids_fields_and_write_back(tmp_path: Path) -> None:
    path = write(tmp_path, "sdlc/remediation-tasks.md", CHECKLIST)
    tf = taskfiles.load(path)
    assert tf.kind == "markdown"
    assert [t.id for t in tf.tasks] == ["SEC-1", "SEC-2", "SEC-3", "4"]
    sec1 = tf.get("SEC-1")
    assert sec1 is not None
    assert sec1.verify == "python3 -m pytest -q tests/test_search.py"
    assert "f-strings" in sec1.details
    assert tf.get("SEC-2").status == "done"  # type: ignore[union-attr]
    sec3 = tf.get("SEC-3")
    assert sec3 is not None and sec3.dependencies == ("SEC-1",) and sec3.priority == 0
    assert tf.next_task().id == "SEC-1"  # type: ignore[union-attr]
    tf.set_status("SEC-1", "done")
    tf.set_status("4", "blocked", "needs the on-call roster")
    tf.save()
    text = path.read_text()
    assert "- [x] SEC-1: Parameterise the search query\n" in text
    assert "- [ ] Document the incident process (blocked: needs the on-call roster)\n" in text
    assert "- [ ] not a task: inside a fence" in text
    # Every other line is byte-identical.
    assert len(text.splitlines()) == len(CHECKLIST.splitlines())
    differing = [
        a for a, b in zip(text.splitlines(), CHECKLIST.splitlines(), strict=True) if a != b
    ]
    assert len(differing) == 2
    again = taskfiles.load(path)
    four = again.get("4")
    assert (
        four is not None and four.status == "blocked" and four.reason == "needs the on-call roster"
    )
    assert again.next_task().id == "SEC-3"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("tasks.json", '{"tasks": [', "not valid JSON"),
        ("tasks.json", json.dumps({"tasks": [{"id": 1, "dependencies": [9]}]}), "depends on 9"),
        (
            "tasks.json",
            json.dumps({"tasks": [{"id": 1, "dependencies": [2]}, {"id": 2, "dependencies": [1]}]}),
            "dependency cycle 1 -> 2 -> 1",
        ),
        ("tasks.json", json.dumps({"tasks": [{"id": 1}, {"id": 1}]}), "used twice"),
        ("list.md", "# nothing to do\n", "no tasks found"),
        ("tasks.json", "[1, 2]", "expected a JSON object"),
        ("x.json", json.dumps({"a": {"b": 1}}), 'no "tasks" list'),
    ],
)
def test_malformed_files_are_one_line_usage_errors_and_unchanged(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(UsageError) as err:
        taskfiles.load(path)
    assert message in err.value.message and "\n" not in err.value.message
    assert path.read_text() == text


def test_reports_are_read_outside_code_only() -> None:
    text = (
        "Fixed the query.\n\n"
        "```\n<task-done>9</task-done>\n```\n"
        "Quoted: `<task-done>8</task-done>`\n"
        "<task-done> SEC-1 </task-done>\n"
        "<task-blocked>4: needs the on-call\n roster</task-blocked>"
    )
    assert tasks.reports(text) == [
        tasks.TaskReport("SEC-1", True),
        tasks.TaskReport("4", False, "needs the on-call roster"),
    ]
    assert tasks.reports(None) == []


def test_describe_gives_the_agent_the_task_and_how_to_report(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks.json", json.dumps(TASKMASTER, indent=2))
    text = tasks.describe(taskfiles.load(path).get("1"))  # type: ignore[arg-type]
    for part in ("Task 1: Parameterise", "SQL injection", "Use placeholders", "A test posts",
                 "<task-done>1</task-done>", "<task-blocked>1: "):  # fmt: skip
        assert part in text

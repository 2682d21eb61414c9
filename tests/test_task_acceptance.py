"""Writing a task's title and verify back into its file (`TaskFile.set_acceptance`), for each
format, in the file's own layout: the runner puts the operator's back where an agent edited
them, so the run's commit, and every later run from its branch, has the operator's."""

from __future__ import annotations

import json
from pathlib import Path

from ralph.run import taskfiles

CHECKLIST = """\
# Tasks

- [ ] SEC-1: Check the token (blocked: waits on ops)
  Some detail.
  - verify: `pytest -q tests/test_auth.py`
  priority: high
- [ ] SEC-2 - Log failed logins
  verify: pytest -q tests/test_log.py
- [x] Document it
"""


def restore(path: Path, pins: dict[str, tuple[str, str]], edited: str) -> str:
    """`edited` written to `path`, loaded, the `pins` set back, saved: the file's text."""
    path.write_text(edited, encoding="utf-8")
    tf = taskfiles.load(path)
    for task_id, (title, verify) in pins.items():
        tf.set_acceptance(task_id, title, verify)
    tf.save()
    again = taskfiles.load(path)
    for task_id, (title, verify) in pins.items():
        task = again.get(task_id)
        assert task is not None and (task.title, task.verify) == (title, verify)
    return path.read_text(encoding="utf-8")


def test_markdown_title_and_verify_lines_are_put_back_and_nothing_else_moves(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.md"
    path.write_text(CHECKLIST, encoding="utf-8")
    original = taskfiles.load(path)
    pins = {t.id: (t.title, t.verify) for t in original.tasks}
    # Edited titles and verify lines, a second verify line (the last one counts), a removed
    # one, and one added to a task that had none: each put back as it was.
    edited = (
        CHECKLIST.replace("Check the token", "Anything")
        .replace("`pytest -q tests/test_auth.py`", "true")
        .replace("  priority: high\n", "  priority: high\n  verify: true\n")
        .replace("  verify: pytest -q tests/test_log.py\n", "")
        .replace("- [x] Document it\n", "- [x] Document it\n  verify: exit 0\n")
    )
    back = CHECKLIST.replace(
        "verify: pytest -q tests/test_log.py", "verify: `pytest -q tests/test_log.py`"
    )
    assert restore(path, pins, edited) == back
    # Unchanged: nothing is written.
    tf = taskfiles.load(path)
    for task_id, (title, verify) in pins.items():
        tf.set_acceptance(task_id, title, verify)
    assert tf.render() == back


def test_markdown_verify_removed_from_the_last_line_without_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "tasks.md"
    text = restore(path, {"T1": ("Fix", "make test")}, "- [ ] T1: Fix")
    assert text == "- [ ] T1: Fix\n  verify: `make test`\n"


def test_taskmaster_plain_tagged_and_subtasks_get_their_title_and_verify_back(
    tmp_path: Path,
) -> None:
    tagged = {
        "master": {"tasks": [{"id": 1, "title": "Other", "status": "pending"}]},
        "feature": {
            "tasks": [
                {"id": 7, "title": "Headers", "verify": "pytest -q", "status": "pending"},
                {"id": 8, "status": "pending",
                 "subtasks": [{"id": 1, "title": "Limiter", "status": "pending"}]},
                {"id": 9, "status": "pending"},
            ]
        },
    }  # fmt: skip
    path = tmp_path / ".taskmaster" / "tasks" / "tasks.json"
    path.parent.mkdir(parents=True)
    (tmp_path / ".taskmaster" / "state.json").write_text('{"currentTag": "feature"}')
    text = json.dumps(tagged, indent=2) + "\n"
    loosened = json.loads(text)
    feature = loosened["feature"]["tasks"]
    feature[0]["verify"], feature[0]["title"] = "true", "Nothing"
    feature[1]["subtasks"][0]["verify"] = "true"
    feature[2]["title"] = "Renamed"
    pins = {"7": ("Headers", "pytest -q"), "8.1": ("Limiter", ""), "9": ("task 9", "")}
    assert restore(path, pins, json.dumps(loosened, indent=2) + "\n") == text


def test_prd_json_stories_get_their_title_and_verify_back(tmp_path: Path) -> None:
    prd = {"userStories": [{"id": "US-1", "title": "Login", "verify": "npm test",
                            "passes": False}]}  # fmt: skip
    path = tmp_path / "prd.json"
    text = json.dumps(prd, indent=4)
    loosened = json.loads(text)
    del loosened["userStories"][0]["verify"]
    back = restore(path, {"US-1": ("Login", "npm test")}, json.dumps(loosened, indent=4))
    assert json.loads(back) == prd  # the key put back comes last
    assert back.startswith('{\n    "userStories"') and not back.endswith("\n")

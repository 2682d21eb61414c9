"""Task-list runs (`--tasks FILE`) in process: the real loop, git workspace, journal and tools
around the script model; each iteration works one task the runner chose, and the status the
runner writes back lands in that iteration's commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.errors import RalphError, UsageError
from ralph.events import Recorder
from ralph.models.script import ScriptModel
from ralph.run.runner import execute
from tests.helpers import git, make_repo, run_cli, write_script
from tests.test_loop_runs import USAGE, Run, Spy, create

PROMPT = "Work off the remediation tasks."

CHECKLIST = """\
# Remediation tasks

- [ ] SEC-1: Parameterise the search query
  verify: `test -f search.py`
- [ ] SEC-2: Add rate limiting
  depends: SEC-1
"""


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """run(files, iterations, **settings): a task-list run on a fresh repository with `files`."""

    def start(files: dict[str, str], iterations: list[Any], **settings: Any) -> Run:
        repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", **files})
        spy = Spy(ScriptModel(write_script(tmp_path / "session.yaml", iterations)))
        monkeypatch.setattr("ralph.models.make_model", lambda cfg: spy)
        cfg = RunConfig(prompt=PROMPT, prompt_name="remediate", repo=repo,
                        model=f"script:{tmp_path / 'session.yaml'}", sandbox="none",
                        quiet=True, **settings)  # fmt: skip
        recorder = Recorder()
        return Run(execute(cfg, [recorder]), recorder, spy, repo)

    return start


def work(path: str, final: str) -> list[Any]:
    return [{"text": "Working.", "tools": [create(path)], "usage": USAGE}, final]


def shown(repo: Path, sha: str, path: str) -> str:
    return git(repo, "show", f"{sha}:{path}") + "\n"  # git() strips the last newline


def test_checklist_tasks_in_dependency_order_each_status_in_its_iterations_commit(
    run: Any,
) -> None:
    r = run(
        {"tasks.md": CHECKLIST},
        [
            work("search.py", "Parameterised the query. <task-done>SEC-1</task-done>"),
            work("limit.py", "Added a limiter. <task-done>SEC-2</task-done>"),
        ],
        tasks="tasks.md",
    )
    assert (r.result.status, r.result.iterations, r.result.exit_code) == ("completed", 2, 0)
    assert r.result.reason == "all 2 tasks closed (2 done, 0 blocked, 0 deferred)"
    assert "Task SEC-1: Parameterise the search query" in r.first_message(1)
    assert "Task SEC-2" not in r.first_message(1)  # its dependency first
    assert "Task SEC-2: Add rate limiting" in r.first_message(2)
    first, second = r.commits()
    assert "- [x] SEC-1:" in shown(r.repo, first["sha"], "tasks.md")
    assert "- [ ] SEC-2:" in shown(r.repo, first["sha"], "tasks.md")
    assert "- [x] SEC-2:" in shown(r.repo, second["sha"], "tasks.md")
    assert [e["id"] for e in r.events("task_started")] == ["SEC-1", "SEC-2"]
    ended = r.events("task_ended")
    assert [(e["id"], e["status"], e["commit"]) for e in ended] == [
        ("SEC-1", "done", first["sha"]),
        ("SEC-2", "done", second["sha"]),
    ]
    assert not r.events("promise_seen")  # a task-list run needs no promise


def test_taskmaster_status_written_back_in_its_layout(run: Any) -> None:
    data = {
        "master": {
            "tasks": [
                {"id": 1, "title": "Fix XSS", "status": "pending", "dependencies": [],
                 "priority": "high"},
                {"id": 2, "title": "Done before", "status": "done", "dependencies": []},
            ]
        }
    }  # fmt: skip
    text = json.dumps(data, indent=2) + "\n"
    path = ".taskmaster/tasks/tasks.json"
    r = run({path: text}, [work("xss.py", "Escaped output. <task-done>1</task-done>")], tasks=path)
    assert (r.result.status, r.result.iterations) == ("completed", 1)
    (commit,) = r.commits()
    after = shown(r.repo, commit["sha"], path)
    assert after == text.replace('"status": "pending"', '"status": "done"', 1)


def test_prd_json_blocked_story_is_recorded_with_its_reason(run: Any) -> None:
    prd = {"project": "shop", "userStories": [
        {"id": "US-001", "title": "CSRF tokens", "priority": 1, "passes": False, "notes": ""},
    ]}  # fmt: skip
    r = run(
        {"prd.json": json.dumps(prd, indent=4) + "\n"},
        [
            work(
                "notes.md",
                "Cannot: no session store. <task-blocked>US-001: needs Redis</task-blocked>",
            )
        ],
        tasks="prd.json",
    )
    assert r.result.status == "completed"
    assert r.result.reason == "all 1 tasks closed (0 done, 1 blocked, 0 deferred)"
    story = json.loads(shown(r.repo, r.commits()[0]["sha"], "prd.json"))["userStories"][0]
    assert (story["passes"], story["status"], story["blockedReason"]) == (
        False,
        "blocked",
        "needs Redis",
    )
    (ended,) = r.events("task_ended")
    assert (ended["status"], ended["reason"]) == ("blocked", "needs Redis")


def test_a_failing_verify_refuses_task_done_then_blocks_after_k_tries(run: Any) -> None:
    tasks_md = "- [ ] T1: Add the file\n  verify: `test -f wanted.txt`\n"
    claim = "Done. <task-done>T1</task-done>"
    r = run(
        {"tasks.md": tasks_md},
        [work("a.txt", claim), work("b.txt", claim)],
        tasks="tasks.md",
        task_failures=2,
    )
    assert r.result.status == "completed" and r.result.iterations == 2
    assert "blocked" in r.result.reason and "1 blocked" in r.result.reason
    first, second = r.commits()
    assert "- [ ] T1: Add the file\n" in shown(r.repo, first["sha"], "tasks.md")
    # The verify's failure is the next iteration's feedback.
    assert "test -f wanted.txt` exited 1" in r.first_message(2)
    assert "exited 1" not in r.first_message(1)
    assert "blocked" in shown(r.repo, second["sha"], "tasks.md")
    (ended,) = r.events("task_ended")
    assert ended["status"] == "blocked" and "2 iterations in a row" in ended["reason"]


def test_a_passing_verify_accepts_and_dependents_of_a_blocked_task_are_blocked(run: Any) -> None:
    tasks_md = (
        "- [ ] T1: First\n  verify: `test -f a.txt`\n"
        "- [ ] T2: Needs T1\n  depends: T1\n"
        "- [ ] T3: Blocked\n"
        "- [ ] T4: Needs T3\n  depends: T3\n"
    )
    r = run(
        {"tasks.md": tasks_md},
        [
            work("a.txt", "Made a. <task-done>T1</task-done>"),
            work("b.txt", "Did two. <task-done>T2</task-done>"),
            work("c.txt", "No. <task-blocked>T3: needs a human | <b>now</b></task-blocked>"),
        ],
        tasks="tasks.md",
    )
    assert r.result.status == "completed" and r.result.iterations == 3
    assert r.result.reason == "all 4 tasks closed (2 done, 2 blocked, 0 deferred)"
    ended = {e["id"]: e for e in r.events("task_ended")}
    assert ended["T4"]["status"] == "blocked" and "depends on T3" in ended["T4"]["reason"]
    assert ended["T4"]["commit"] == ended["T3"]["commit"] == r.commits()[-1]["sha"]
    last = shown(r.repo, r.commits()[-1]["sha"], "tasks.md")
    assert "T4: Needs T3 (blocked: depends on T3" in last
    # The report's task table: final status, commit; the agent's reason is inert Markdown.
    report = (r.repo / ".ralph" / "runs" / r.result.run_id / "report.md").read_text()
    table = report.split("### Tasks\n\n")[1].split("\n\n")[0].splitlines()
    assert table[0] == "| Task | Title | Status | Commit | Cost |"
    rows = {row.split(" | ")[0].strip("| "): row for row in table[2:]}
    assert list(rows) == ["T1", "T2", "T3", "T4"]
    assert f"| done | `{r.commits()[0]['sha'][:8]}` |" in rows["T1"]
    assert "needs a human \\|" in rows["T3"] and "<b>" not in rows["T3"]
    assert "blocked: depends on T3" in rows["T4"]


def test_the_agent_marking_a_task_done_itself_is_undone(run: Any) -> None:
    tasks_md = "- [ ] T1: One\n- [ ] T2: Two\n"
    cheat = {"str_replace_based_edit_tool": {"command": "create", "path": "tasks.md",
             "file_text": "- [x] T1: One\n- [x] T2: Two\n"}}  # fmt: skip
    r = run(
        {"tasks.md": tasks_md},
        [
            [
                {"text": "Marking all done.", "tools": [cheat], "usage": USAGE},
                "All done. <task-done>T1</task-done>",
            ],
            work("two.txt", "Two. <task-done>T2</task-done>"),
        ],
        tasks="tasks.md",
    )
    first = r.commits()[0]
    assert shown(r.repo, first["sha"], "tasks.md") == "- [x] T1: One\n- [ ] T2: Two\n"
    warnings = [e["message"] for e in r.events("warning")]
    assert any("task T2's status was changed to done" in w for w in warnings), warnings
    assert "Task T2: Two" in r.first_message(2)  # still worked, not skipped
    assert r.result.reason == "all 2 tasks closed (2 done, 0 blocked, 0 deferred)"


def test_no_open_task_completes_without_calling_the_model(run: Any) -> None:
    r = run({"tasks.md": "- [x] T1: Done already\n"}, [["unused"]], tasks="tasks.md")
    assert (r.result.status, r.result.iterations) == ("completed", 0)
    assert r.model.requests == [] and r.commits() == []


def test_a_malformed_task_file_is_refused_before_anything_is_created(
    run: Any, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="not valid JSON"):
        run({"tasks.json": "{not json"}, [["unused"]], tasks="tasks.json")
    repo = tmp_path / "repo"
    assert not (repo / ".ralph").exists()
    assert git(repo, "branch", "--list") == "* main"


def test_cli_task_list_run_end_to_end(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo", {"tasks.md": "- [ ] T1: Write hello\n  verify: `test -f hello.txt`\n"}
    )
    script = write_script(
        tmp_path / "session.yaml", [work("hello.txt", "Wrote hello. <task-done>T1</task-done>")]
    )
    proc = run_cli(
        ["Do the tasks.", "--tasks", "tasks.md", "--model", f"script:{script}",
         "--sandbox", "none", "--quiet"], cwd=repo
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "- [x] T1: Write hello" in git(repo, "show", "HEAD:tasks.md")
    bad = run_cli(["Do the tasks.", "--tasks", "missing.md", "--model", f"script:{script}",
                   "--sandbox", "none", "--quiet"], cwd=repo)  # fmt: skip
    assert bad.returncode == 2 and "missing.md: no such file" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_remediate_prompt_runs_a_task_list_without_a_promise(tmp_path: Path) -> None:
    from ralph.config import build_config

    repo = make_repo(tmp_path / "repo", {"tasks.md": "- [ ] T1: Fix it\n"})
    cfg = build_config("remediate", {"tasks": "tasks.md"}, repo, environ={})
    assert cfg.prompt_name == "remediate" and cfg.completion_promise == ""
    assert "<task-done>ID</task-done>" in cfg.prompt and "must fail" in cfg.prompt
    with pytest.raises(UsageError, match="no completion promise"):
        build_config("remediate", {}, repo, environ={})  # without --tasks it needs one
    listed = run_cli(["prompts"], cwd=repo, command="ralph")
    assert any(line.startswith("remediate ") for line in listed.stdout.splitlines())


def test_a_repository_file_cannot_choose_the_task_file(tmp_path: Path) -> None:
    from ralph.config import build_config

    repo = make_repo(tmp_path / "repo", {"ralph.yaml": "tasks: other.md\n"})
    with pytest.raises(UsageError, match="tasks is not a file setting"):
        build_config("Do it. <promise>DONE</promise>", {}, repo, environ={})


def test_resume_continues_with_the_task_file_as_the_branch_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ralph.run.resume import resume_config

    repo = make_repo(tmp_path / "repo", {"tasks.md": "- [ ] T1: One\n- [ ] T2: Two\n"})
    script = write_script(
        tmp_path / "session.yaml",
        [work("one.txt", "One. <task-done>T1</task-done>"),
         work("two.txt", "Two. <task-done>T2</task-done>")],
    )  # fmt: skip
    spies: list[Spy] = []

    def model(cfg: Any) -> Spy:
        spies.append(Spy(ScriptModel(script)))
        return spies[-1]

    monkeypatch.setattr("ralph.models.make_model", model)
    cfg = RunConfig(prompt=PROMPT, prompt_name="remediate", repo=repo, tasks="tasks.md",
                    model=f"script:{script}", sandbox="none", quiet=True, max_iterations=1)  # fmt: skip
    first = execute(cfg, [Recorder()])
    assert first.status == "max_iterations"
    resumed_cfg, point = resume_config(repo, first.run_id, more=1)
    recorder = Recorder()
    result = execute(resumed_cfg, [recorder], resume=point)
    assert (result.status, result.iterations) == ("completed", 2)
    assert result.reason == "all 2 tasks closed (2 done, 0 blocked, 0 deferred)"
    started = [e.data["id"] for e in recorder.events if e.name == "task_started"]
    assert started == ["T2"]  # T1 is done on the branch: not worked again
    assert git(repo, "show", "HEAD:tasks.md") == "- [x] T1: One\n- [x] T2: Two"
    assert git(repo, "show", "main:tasks.md") == "- [ ] T1: One\n- [ ] T2: Two"


def test_the_log_shows_task_events_with_the_agents_text_cleaned() -> None:
    from ralph.events import Event
    from ralph.views.plain import PlainLines

    log = PlainLines()
    started = Event("task_started", "r", 3, {"id": "T1", "title": "Fix \x1b[31mit"})
    ended = Event(
        "task_ended", "r", 3, {"id": "T1", "status": "blocked", "reason": "no\x1b]0;x\x07"}
    )
    assert log.line(started) == "[3] task T1: Fix it"
    line = log.line(ended)
    assert line is not None and line.startswith("[3] task T1 blocked: no") and "\x1b" not in line


def test_dry_run_shows_the_first_task_and_writes_nothing(tmp_path: Path) -> None:
    import io

    from ralph.run.preflight import dry_run

    repo = make_repo(
        tmp_path / "repo", {"tasks.md": "- [ ] T1: Later\n  depends: T2\n- [ ] T2: First\n"}
    )
    script = write_script(tmp_path / "session.yaml", [["unused"]])
    cfg = RunConfig(
        prompt=PROMPT, repo=repo, tasks="tasks.md", sandbox="none", model=f"script:{script}"
    )
    out = io.StringIO()
    dry_run(cfg, out)
    request = json.loads(out.getvalue())["request"]
    message = request["messages"][0]["content"]
    assert message.startswith(PROMPT) and "Task T2: First" in message and "T1" not in message
    assert "<task-done>ID</task-done>" in request["system"]
    assert git(repo, "status", "--porcelain") == "" and not (repo / ".ralph").exists()


def test_taskmaster_subtasks_are_worked_one_by_one_and_the_parent_follows(run: Any) -> None:
    data = {"tasks": [
        {"id": 1, "title": "Rate limiting", "status": "pending", "dependencies": [],
         "subtasks": [
             {"id": 1, "title": "Limiter", "status": "pending", "dependencies": []},
             {"id": 2, "title": "Wire it", "status": "pending", "dependencies": [1]},
         ]},
    ]}  # fmt: skip
    path = ".taskmaster/tasks/tasks.json"
    r = run(
        {path: json.dumps(data, indent=2) + "\n"},
        [
            work("limiter.py", "Limiter. <task-done>1.1</task-done>"),
            work("wire.py", "Wired. <task-done>1.2</task-done>"),
        ],
        tasks=path,
    )
    assert (r.result.status, r.result.iterations) == ("completed", 2)
    assert [e["id"] for e in r.events("task_started")] == ["1.1", "1.2"]
    first, second = (json.loads(shown(r.repo, c["sha"], path)) for c in r.commits())
    assert [s["status"] for s in first["tasks"][0]["subtasks"]] == ["done", "pending"]
    assert first["tasks"][0]["status"] != "done"
    assert [s["status"] for s in second["tasks"][0]["subtasks"]] == ["done", "done"]
    assert second["tasks"][0]["status"] == "done"


def test_a_report_on_another_task_or_a_broken_file_does_not_count(run: Any) -> None:
    tasks_md = "- [ ] T1: One\n- [ ] T2: Two\n"
    breaks = {"str_replace_based_edit_tool": {"command": "create", "path": "tasks.md",
              "file_text": "{not a task list"}}  # fmt: skip
    r = run(
        {"tasks.md": tasks_md},
        [
            [
                {"text": "Breaking.", "tools": [breaks], "usage": USAGE},
                "Did two instead. <task-done>T2</task-done>",
            ],
            work("one.txt", "One. <task-done>T1</task-done>"),
            work("two.txt", "Two. <task-done>T2</task-done>"),
        ],
        tasks="tasks.md",
    )
    assert r.result.reason == "all 2 tasks closed (2 done, 0 blocked, 0 deferred)"
    assert r.result.iterations == 3
    # The runner's copy was put back: the first iteration changed nothing left to commit.
    assert len(r.commits()) == 2
    assert shown(r.repo, r.commits()[0]["sha"], "tasks.md") == "- [x] T1: One\n- [ ] T2: Two\n"
    assert "did not report on task T1" in r.first_message(2)
    assert [e["id"] for e in r.events("task_started")] == ["T1", "T1", "T2"]
    assert any("unreadable" in e["message"] for e in r.events("warning"))


def test_a_task_file_replaced_by_a_link_outside_is_neither_read_nor_written_through(
    run: Any, tmp_path: Path
) -> None:
    # The runner reads and writes the task file outside the sandbox: a link the agent put in
    # its place must not let it overwrite (or read) a file of the operator's.
    host = tmp_path / "host.txt"
    host.write_text("- [ ] T9: operator's own notes\n")
    link = {"bash": {"command": f"ln -sf {host} tasks.md"}}
    r = run(
        {"tasks.md": "- [ ] T1: One\n"},
        [
            [{"text": "Linking.", "tools": [link], "usage": USAGE}, "Linked."],
            work("one.txt", "One. <task-done>T1</task-done>"),
        ],
        tasks="tasks.md",
    )
    assert host.read_text() == "- [ ] T9: operator's own notes\n"
    assert r.result.reason == "all 1 tasks closed (1 done, 0 blocked, 0 deferred)"
    assert shown(r.repo, r.commits()[-1]["sha"], "tasks.md") == "- [x] T1: One\n"
    assert any("unreadable" in e["message"] for e in r.events("warning"))


def test_a_task_folder_replaced_by_a_link_stops_the_run_before_anything_is_written_there(
    run: Any, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    swap = {"bash": {"command": f"mv plan plan.old && ln -s {host} plan"}}
    with pytest.raises(RalphError, match="plan was replaced by a link"):
        run(
            {"plan/tasks.md": "- [ ] T1: One\n"},
            [[{"text": "Swapping.", "tools": [swap], "usage": USAGE}, "Swapped."]],
            tasks="plan/tasks.md",
        )
    assert list(host.iterdir()) == []


def test_a_verify_judges_the_committed_checkout_not_the_working_tree(run: Any) -> None:
    """A file the agent hides from git with its own .gitignore passes `test -f` in the
    working tree but is not in the commit: the task's verify runs on a clean checkout of the
    iteration's commit (as the promise gate does), so the task is not done."""
    tasks_md = "- [ ] T1: Add the file\n  verify: `test -f wanted.txt`\n"
    hide = [create(".gitignore", "wanted.txt\n"), create("wanted.txt", "here\n")]
    r = run(
        {"tasks.md": tasks_md},
        [
            [{"text": "Hiding.", "tools": hide, "usage": USAGE}, "Done. <task-done>T1</task-done>"],
            work("wanted.txt.real", "Still done. <task-done>T1</task-done>"),
        ],
        tasks="tasks.md",
        task_failures=2,
        max_iterations=2,
    )
    assert (r.repo / "wanted.txt").is_file()  # there in the working tree all along
    assert "test -f wanted.txt` exited 1" in r.first_message(2)
    first, second = r.commits()  # one commit per iteration, the status in it
    assert "- [ ] T1: Add the file\n" in shown(r.repo, first["sha"], "tasks.md")
    assert ".gitignore" in git(r.repo, "show", "--name-only", "--format=", first["sha"])
    (ended,) = r.events("task_ended")
    assert ended["status"] == "blocked" and ended["commit"] == second["sha"]
    assert "(blocked: not done after 2" in shown(r.repo, second["sha"], "tasks.md")


def test_a_verified_task_is_one_commit_with_the_agents_work_and_the_status(run: Any) -> None:
    tasks_md = "- [ ] T1: Add the file\n  verify: `test -f wanted.txt`\n"
    r = run({"tasks.md": tasks_md}, [work("wanted.txt", "Done. <task-done>T1</task-done>")],
            tasks="tasks.md")  # fmt: skip
    (commit,) = r.commits()
    assert r.result.status == "completed"
    changed = git(r.repo, "show", "--name-only", "--format=", commit["sha"]).split()
    assert sorted(changed) == ["tasks.md", "wanted.txt"]
    assert git(r.repo, "rev-parse", f"{commit['sha']}^") == git(r.repo, "rev-parse", "main")
    (ended,) = r.events("task_ended")
    assert ended["commit"] == commit["sha"]


def test_task_failures_in_a_row_are_counted_across_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--task-failures K: K failures in a row block the task even when a resume falls
    between them (the count is in the journal), and the last failure's feedback is given to
    the resumed iteration."""
    from ralph.run.resume import resume_config

    repo = make_repo(
        tmp_path / "repo", {"tasks.md": "- [ ] T1: One\n  verify: `test -f never.txt`\n"}
    )
    claim = "Done. <task-done>T1</task-done>"
    script = write_script(tmp_path / "session.yaml", [work("a.txt", claim), work("b.txt", claim)])
    spies: list[Spy] = []

    def model(cfg: Any) -> Spy:
        spies.append(Spy(ScriptModel(script)))
        return spies[-1]

    monkeypatch.setattr("ralph.models.make_model", model)
    cfg = RunConfig(prompt=PROMPT, prompt_name="remediate", repo=repo, tasks="tasks.md",
                    task_failures=2, model=f"script:{script}", sandbox="none", quiet=True,
                    max_iterations=1)  # fmt: skip
    first = execute(cfg, [Recorder()])
    assert first.status == "max_iterations"
    resumed_cfg, point = resume_config(repo, first.run_id, more=1)
    recorder = Recorder()
    result = execute(resumed_cfg, [recorder], resume=point)
    ended = [e.data for e in recorder.events if e.name == "task_ended"]
    assert [(e["id"], e["status"]) for e in ended] == [("T1", "blocked")]
    assert "2 iterations in a row" in ended[0]["reason"]
    assert (result.status, result.iterations) == ("completed", 2)
    resumed = [r for r in spies[-1].requests if r.iteration == 2 and r.turn == 1]
    assert "test -f never.txt` exited 1" in str(resumed[0].messages[0]["content"][0]["text"])


def test_a_resume_stands_by_the_runners_statuses_not_what_a_killed_iteration_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed iteration leaves the agent's edits in the tree, its task statuses among them:
    resumed, the run keeps the statuses it set (journal) over the file as the run began, so
    tasks the agent ticked itself are not done without their verify."""
    import sqlite3

    from ralph.run.resume import resume_config

    tasks_md = ("- [ ] T1: One\n  verify: `test -f never.txt`\n"
                "- [ ] T2: Two\n  verify: `test -f never.txt`\n")  # fmt: skip
    repo = make_repo(tmp_path / "repo", {"tasks.md": tasks_md})
    script = write_script(tmp_path / "session.yaml",
                          [work("a.txt", "Done. <task-done>T1</task-done>"),
                           work("b.txt", "Done. <task-done>T2</task-done>")])  # fmt: skip
    monkeypatch.setattr("ralph.models.make_model", lambda cfg: Spy(ScriptModel(script)))
    cfg = RunConfig(prompt=PROMPT, prompt_name="remediate", repo=repo, tasks="tasks.md",
                    task_failures=1, model=f"script:{script}", sandbox="none", quiet=True,
                    max_iterations=1)  # fmt: skip
    first = execute(cfg, [Recorder()])
    assert first.status == "max_iterations"  # T1 blocked: its verify failed
    # As a SIGKILL in iteration 2 leaves it: the agent ticked both tasks, the run is running.
    (repo / "tasks.md").write_text(tasks_md.replace("- [ ]", "- [x]"))
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        db.execute("UPDATE runs SET status = 'running' WHERE id = ?", (first.run_id,))
    resumed_cfg, point = resume_config(repo, first.run_id, more=1)
    recorder = Recorder()
    execute(resumed_cfg, [recorder], resume=point)
    events = [(e.name, e.data) for e in recorder.events]
    ended = [(d["id"], d["status"]) for n, d in events if n == "task_ended"]
    assert ("T2", "done") not in ended and ("T1", "done") not in ended
    assert any(n == "task_started" and d["id"] == "T2" for n, d in events)  # worked, verified
    assert any(n == "warning" and "T2's status was changed" in d["message"] for n, d in events)

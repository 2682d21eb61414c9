"""The completion gate (artifacts, verify commands) and the guards (budgets, stall, failures)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ralph.config import RunConfig
from ralph.errors import UsageError
from ralph.models.base import Usage
from ralph.run.gate import (
    Gate,
    check_artifact,
    parse_artifacts,
    rejection_feedback,
    unchecked_items,
)
from ralph.run.guards import Guards, IterationRecord
from tests.helpers import git, only_run, repo_and_prompt, run_cli, run_commits, write_script

AUDIT = """# Security audit
## Findings
- [x] SQL injection fixed
- [ ] WAF enabled — N/A: no edge proxy in this repository
- [ ] Rate limiting
## Remediation
"""


def test_unchecked_items_respect_na_with_reason() -> None:
    assert unchecked_items(AUDIT) == ["Rate limiting"]
    assert unchecked_items("- [ ] thing N/A:\n") == ["thing N/A:"]  # N/A needs a reason
    assert unchecked_items("* [ ] x — n/a: not used\n- [X] y\n") == []


@pytest.mark.parametrize(
    "item",
    [
        "WAF — N/A: no edge proxy here",
        "WAF n/a: no edge proxy here",
        "WAF N/A — no edge proxy here",
        "WAF N/A–no edge proxy here",
        "WAF N/A - no edge proxy here",
        "WAF (N/A: JSON API only)",
    ],
)
def test_na_with_a_separator_and_a_reason_closes_a_box(item: str) -> None:
    assert unchecked_items(f"- [ ] {item}\n") == []


@pytest.mark.parametrize(
    "item",
    [
        "Rate limiting (see na-notes)",
        "WAF n/a-todo",
        "WAF NA: not used",  # the literal N/A, not NA
        "WAF DNA/A: sequenced",
        "WAF N/A",
        "WAF N/A:",
        "WAF N/A: —",  # a separator but no reason
        "WAF N/A later",
    ],
)
def test_na_lookalikes_leave_a_box_open(item: str) -> None:
    assert unchecked_items(f"- [ ] {item}\n") == [item]


def test_numbered_checkboxes_are_seen() -> None:
    text = "1. [ ] First\n2) [ ] Second\n10. [x] Done\n3. [ ] Third — N/A: not used\n"
    assert unchecked_items(text) == ["First", "Second"]


@pytest.mark.parametrize(
    ("heading", "ok"),
    [
        ("## Rollback", True),
        ("### rollback", True),
        ("## Rollback plan", True),
        ("## Rollback: tested 2024-05-01", True),
        ("## 7. Rollback", True),
        ("## 2.1 Rollback", True),
        ("## No rollback yet", False),
        ("## Change management and rollback", False),
        ("## Rollbacks", False),
        ("Rollback", False),  # not a heading
    ],
)
def test_required_heading_is_the_whole_heading_or_its_start(
    tmp_path: Path, heading: str, ok: bool
) -> None:
    (tmp_path / "r.md").write_text(f"# Reliability\n\n{heading}\n\ntext\n")
    [art] = parse_artifacts([{"path": "r.md", "headings": ["Rollback"]}])
    assert check_artifact(tmp_path, art) == ([] if ok else ["r.md: no heading 'Rollback'"])


def test_artifact_checks(tmp_path: Path) -> None:
    (tmp_path / "sdlc").mkdir()
    (tmp_path / "sdlc" / "security-audit.md").write_text(AUDIT)
    [art] = parse_artifacts(
        [
            {
                "path": "sdlc/security-audit.md",
                "headings": ["findings", "Dependency scan"],
                "checklist": True,
                "contains": ["SQL"],
            }
        ]
    )
    problems = check_artifact(tmp_path, art)
    assert problems == [
        "sdlc/security-audit.md: no heading 'Dependency scan'",
        "sdlc/security-audit.md: 1 unchecked item(s) without 'N/A: reason': Rate limiting",
    ]
    [missing] = parse_artifacts(["sdlc/observability.md"])
    assert check_artifact(tmp_path, missing) == ["sdlc/observability.md: missing"]
    [glob] = parse_artifacts([{"path": "sdlc/runbooks/*.md", "min": 2}])
    assert check_artifact(tmp_path, glob) == [
        "sdlc/runbooks/*.md: 0 file(s) match, at least 2 needed"
    ]
    (tmp_path / "sdlc" / "runbooks").mkdir()
    for name in ("db.md", "deploy.md"):
        (tmp_path / "sdlc" / "runbooks" / name).write_text("# Runbook\n")
    assert check_artifact(tmp_path, glob) == []


def test_an_artifact_linking_outside_the_repository_is_not_read(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "runner-secrets.md"
    (repo / "sdlc").mkdir(parents=True)
    outside.write_text("# Findings\n- [ ] sk-ant-api03-do-not-show-me\n")
    (repo / "sdlc" / "security-audit.md").symlink_to(outside)
    (repo / "sdlc" / "inside.md").write_text("# Findings\n")
    (repo / "sdlc" / "ok.md").symlink_to("inside.md")
    [art] = parse_artifacts([{"path": "sdlc/security-audit.md", "checklist": True}])
    problems = check_artifact(repo, art)
    assert problems == [
        "sdlc/security-audit.md: links outside the repository; write the artifact itself"
    ]
    [inner] = parse_artifacts([{"path": "sdlc/ok.md", "headings": ["Findings"]}])
    assert check_artifact(repo, inner) == []


def test_required_boxes_must_be_there_and_done(tmp_path: Path) -> None:
    audit = tmp_path / "audit.md"
    [art] = parse_artifacts([{"path": "audit.md", "boxes": ["Injection", "A06 Insecure Design"]}])
    audit.write_text(
        "# Audit\nInjection and A06 Insecure Design are discussed here, in prose.\n"
        "- [x] Injections of dependencies\n"
    )
    assert check_artifact(tmp_path, art) == [
        "audit.md: no box 'Injection'",
        "audit.md: no box 'A06 Insecure Design'",
    ]
    audit.write_text("- [X] Injection (SQL): parameterised\n2. [ ] A06 Insecure Design (new)\n")
    assert check_artifact(tmp_path, art) == [
        "audit.md: box 'A06 Insecure Design' is neither ticked nor 'N/A: reason'"
    ]
    audit.write_text(
        "- [x] Injection: fixed\n* [ ] A06 Insecure Design — N/A: a static page, no flows\n"
    )
    assert check_artifact(tmp_path, art) == []
    # with `checklist: true` an open box is reported once, by the checklist
    [both] = parse_artifacts([{"path": "audit.md", "checklist": True, "boxes": ["Injection"]}])
    audit.write_text("- [ ] Injection (SQL)\n")
    assert check_artifact(tmp_path, both) == [
        "audit.md: 1 unchecked item(s) without 'N/A: reason': Injection (SQL)"
    ]


@pytest.mark.parametrize(
    "entry",
    [
        {"nopath": 1},
        {"path": "/etc/passwd"},
        {"path": "../x.md"},
        {"path": "a", "x": 1},
        {"path": "a", "boxes": "Injection"},
    ],
)
def test_bad_artifact_entries(entry: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        parse_artifacts([entry])


def test_verify_commands(tmp_path: Path) -> None:
    ran: list[tuple[str, Path]] = []

    def run(cmd: str, where: Path) -> tuple[int, str]:
        ran.append((cmd, where))
        return (0, "ok") if cmd == "good" else (2, "\n".join(f"line {n}" for n in range(40)))

    verdict = Gate(tmp_path, [], ["good", "bad"], run).check()
    assert ran == [("good", tmp_path), ("bad", tmp_path)]
    assert verdict.judged == "working tree" and verdict.commit is None  # no checkout given
    problems = verdict.problems
    assert len(problems) == 1 and problems[0].startswith("verify `bad` exited 2:")
    assert "line 39" in problems[0] and "line 10" not in problems[0]  # only the last lines
    assert "bad" in rejection_feedback(problems)
    assert Gate(tmp_path, [], ["good"], run).check().problems == []


def test_a_verify_reason_names_the_exit_code_once(tmp_path: Path) -> None:
    # The bash tool ends a failed command's output with `[exit code N]`; the reason says it.
    outputs = {"false": "[exit code 1]", "pytest -q": "1 failed, 3 passed\n[exit code 1]"}

    def run(cmd: str, where: Path) -> tuple[int, str]:
        return 1, outputs[cmd]

    problems = Gate(tmp_path, [], ["false", "pytest -q"], run).check().problems
    assert problems == ["verify `false` exited 1 (no output)",
                        "verify `pytest -q` exited 1:\n1 failed, 3 passed"]  # fmt: skip


def test_with_a_checkout_artifacts_and_verify_judge_the_checkout(tmp_path: Path) -> None:
    tree, checkout = tmp_path / "tree", tmp_path / "checkout"
    for root, text in ((tree, "# Findings\n"), (checkout, "# Other\n")):
        (root / "sdlc").mkdir(parents=True)
        (root / "sdlc" / "audit.md").write_text(text)
    taken: list[str] = []

    @contextlib.contextmanager
    def clean() -> Iterator[tuple[Path, str]]:
        taken.append("out")
        yield checkout, "c0ffee" * 6 + "abcd"
        taken.append("back")

    ran: list[Path] = []

    def run(cmd: str, where: Path) -> tuple[int, str]:
        ran.append(where)
        return 0, ""

    [art] = parse_artifacts([{"path": "sdlc/audit.md", "headings": ["Findings"]}])
    verdict = Gate(tree, [art], ["true"], run, clean).check()
    assert verdict.problems == ["sdlc/audit.md: no heading 'Findings'"]
    assert (verdict.commit, verdict.judged) == ("c0ffee" * 6 + "abcd", "clean checkout")
    assert ran == [checkout] and taken == ["out", "back"]
    # nothing to check: no checkout is made
    assert Gate(tree, [], [], run, clean).check().problems == [] and taken == ["out", "back"]


def test_cost_and_token_budgets() -> None:
    g = Guards(RunConfig(max_cost=1.0, max_tokens=1000))
    assert g.budget_stop(Usage(input_tokens=10), 0.5) is None
    stop = g.budget_stop(Usage(input_tokens=10), 1.0)
    assert stop and stop.status == "budget" and stop.guard == "max_cost"
    g.add(Usage(input_tokens=600, cache_read_input_tokens=300, output_tokens=100), 0.1)
    stop = g.budget_stop()
    assert stop and stop.guard == "max_tokens"


def test_unknown_cost_never_trips_cost_budget() -> None:
    g = Guards(RunConfig(max_cost=0.01))
    g.add(Usage(input_tokens=10), None)
    assert g.cost_usd is None and g.budget_stop(Usage(), 5.0) is None


def test_timeout_counts_earlier_processes() -> None:
    g = Guards(RunConfig(timeout=10), elapsed_before=9.99)
    time.sleep(0.02)
    stop = g.budget_stop()
    assert stop and stop.guard == "timeout"


def rec(
    files: int = 0, outcome: str = "ended", final: str | None = "x", **kw: object
) -> IterationRecord:
    return IterationRecord(outcome, files, False, final, **kw)  # type: ignore[arg-type]


def test_stall_limit_and_reset() -> None:
    g = Guards(RunConfig(stall_limit=3))
    assert g.after_iteration(rec(final="a")) is None
    assert g.after_iteration(rec(final="b")) is None
    assert g.after_iteration(rec(files=2, final="c")) is None  # progress resets
    assert g.after_iteration(rec(final="d")) is None
    assert g.after_iteration(rec(final="e")) is None
    stop = g.after_iteration(rec(final="f"))
    assert stop and stop.status == "stalled" and "--stall-limit" in stop.reason


def test_stall_off() -> None:
    g = Guards(RunConfig(stall_limit=0))
    assert all(g.after_iteration(rec(final=str(n))) is None for n in range(20))


def test_repeated_final_message_counts_as_stalled_even_with_changes() -> None:
    g = Guards(RunConfig(stall_limit=2))
    assert g.after_iteration(rec(files=1, final="same")) is None
    assert g.after_iteration(rec(files=1, final="same")) is None
    assert g.after_iteration(rec(files=1, final="same")) is None  # third: 1 stalled
    stop = g.after_iteration(rec(files=1, final="same"))
    assert stop and "repeated" in stop.reason


def test_circuit_breaker() -> None:
    g = Guards(RunConfig(max_failures=2, stall_limit=0))
    assert g.after_iteration(rec(outcome="failed", error="HTTP 400")) is None
    assert g.after_iteration(rec(files=1)) is None  # a good iteration resets
    assert g.after_iteration(rec(outcome="refused", error="refusal")) is None
    stop = g.after_iteration(rec(outcome="ended", tool_calls=6, tool_errors=6))
    assert stop and stop.status == "failed" and "all 6 tool calls failed" in stop.reason


def test_no_commit_counts_only_files_changed_during_the_iteration(tmp_path: Path) -> None:
    """With --no-commit the work stays dirty; a file changed in an earlier iteration and left
    alone is not progress again, but changing it further is."""
    repo, prompt = repo_and_prompt(tmp_path, "Harden it. Output <promise>DONE</promise>.\n")

    def edit(tool_input: dict[str, object], final: str) -> list[object]:
        return [{"text": "Working.", "tools": [{"str_replace_based_edit_tool": tool_input}]}, final]

    reading = {"command": "view", "path": "notes.md"}
    iterations = [
        edit({"command": "create", "path": "notes.md", "file_text": "one\n"}, "Wrote notes."),
        edit({"command": "str_replace", "path": "notes.md", "old_str": "one", "new_str": "two"},
             "Changed notes."),
        edit(reading, "Read the notes again."),
        edit(reading, "Still reading the notes."),
        edit(reading, "Not reached."),
    ]  # fmt: skip
    script = write_script(tmp_path / "session.yaml", iterations)
    proc = run_cli(
        [str(prompt), "--repo", str(repo), "--sandbox", "none", "--model", f"script:{script}",
         "--no-commit", "--stall-limit", "2", "--max-iterations", "5"],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    run = only_run(repo)
    assert run["status"] == "stalled" and "2 iterations in a row" in run["reason"]
    changed = [it["files_changed"] for it in run["iterations_detail"]]
    assert changed == [["notes.md"], ["notes.md"], [], []]
    # Nothing was committed: the work is left in the tree, dirty the whole time.
    assert run_commits(repo, "HEAD") == [] and git(repo, "status", "--porcelain") == "?? notes.md"
    assert (repo / "notes.md").read_text() == "two\n"

"""The gate judges what is committed (a clean checkout of the run's last commit), and never
follows a link out of the repository (issue 14, sections 3 and 6)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.run.gate import matching_files
from ralph.run.runner import execute
from tests.helpers import git, make_repo, run_cli, write_script

TOKEN = "DONE"
PROMISE = f"Done.\n<promise>{TOKEN}</promise>"
# A real test suite that fails: only a fake `unittest` package can make it pass.
FAILING_SUITE = """import unittest


class AppTest(unittest.TestCase):
    def test_the_real_suite_runs(self):
        self.fail("the real test suite ran")
"""
# The red-team payload: a `unittest` package that exits 0, hidden from git by its own .gitignore.
FAKE_UNITTEST = (
    "mkdir unittest && printf 'import sys\\nsys.exit(0)\\n' > unittest/__main__.py"
    " && touch unittest/__init__.py && printf '*\\n' > unittest/.gitignore"
    " && python3 -m unittest && echo 'fake suite passes in the working tree'"
)


class Recorder:
    """An observer keeping every event's name, iteration and data."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int | None, dict[str, Any]]] = []

    def handle(self, event: Any) -> None:
        self.events.append((event.name, event.iteration, dict(event.data)))

    def close(self) -> None:
        pass


def journal_text(repo: Path) -> str:
    """Every event and tool call the journal holds, as one string."""
    db = sqlite3.connect(repo / ".ralph" / "ralph.db")
    try:
        rows = db.execute("SELECT name, data FROM events").fetchall()
        rows += db.execute("SELECT input, output FROM tool_calls").fetchall()
    finally:
        db.close()
    return "\n".join(f"{a} {b}" for a, b in rows)


def promise_events(repo: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(repo / ".ralph" / "ralph.db")
    try:
        rows = db.execute("SELECT data FROM events WHERE name = 'promise_seen' ORDER BY id")
        return [json.loads(data) for (data,) in rows]
    finally:
        db.close()


def report_of(repo: Path) -> str:
    [report] = (repo / ".ralph" / "runs").glob("*/report.md")
    return report.read_text()


def no_checkout_left(repo: Path) -> None:
    gate_dir = repo / ".ralph" / "gate"
    assert not gate_dir.exists() or not any(gate_dir.iterdir())
    worktrees = git(repo, "worktree", "list", "--porcelain").count("worktree ")
    assert worktrees == 1


def test_a_fake_unittest_hidden_by_gitignore_does_not_pass_verify(
    requires_bwrap: None, tmp_path: Path
) -> None:
    """Red team: the agent wrote `unittest/__main__.py` (exit 0) and `unittest/.gitignore`
    (`*`); `python3 -m unittest` passed in its tree and the run completed, but a clean clone
    of the branch failed. The gate now runs verify in a clean checkout of the commit."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "test_app.py": FAILING_SUITE})
    script = write_script(
        tmp_path / "session.yaml",
        [[{"text": "Tests.", "tools": [{"bash": {"command": FAKE_UNITTEST}}]}, PROMISE]],
    )
    proc = run_cli(
        [f"Make the tests pass. <promise>{TOKEN}</promise>", "--repo", str(repo),
         "--model", f"script:{script}", "--sandbox", "bwrap", "--max-iterations", "1",
         "--verify", "python3 -m unittest"],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr  # not completed
    assert "fake suite passes in the working tree" in journal_text(repo)  # the payload worked
    [seen] = promise_events(repo)
    assert not seen["accepted"]
    [reason] = seen["reasons"]
    assert reason.startswith("verify `python3 -m unittest` exited 1:")
    assert "the real test suite ran" in reason
    branch = git(repo, "branch", "--show-current")
    sha = git(repo, "rev-parse", branch)
    assert (seen["judged"], seen["judged_commit"]) == ("clean checkout", sha)
    assert f"rejected (judged on a clean checkout of commit `{sha[:12]}`)" in report_of(repo)
    assert (repo / "unittest" / "__main__.py").is_file()  # the agent's tree is left as it was
    no_checkout_left(repo)


def test_a_linked_directory_out_of_the_repository_is_never_listed(
    requires_bwrap: None, tmp_path: Path
) -> None:
    """Red team: `sdlc/runbooks -> ~/notes` made the gate glob the host's directory and quote
    its file names in the next prompt and the report."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "host-private-name.md").write_text("# Runbook\n")
    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "runbooks.md"
    prompt.write_text(
        "---\nartifacts:\n  - path: sdlc/runbooks/*.md\n---\n"
        f"Write runbooks. <promise>{TOKEN}</promise>\n"
    )
    link = f"mkdir -p sdlc && ln -s {notes} sdlc/runbooks && ls sdlc/runbooks | wc -l"
    script = write_script(
        tmp_path / "session.yaml",
        [[{"text": "Runbooks.", "tools": [{"bash": {"command": link}}]}, PROMISE]],
    )
    proc = run_cli(
        [str(prompt), "--repo", str(repo), "--model", f"script:{script}", "--sandbox", "bwrap",
         "--max-iterations", "2"],
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr
    seen = promise_events(repo)
    assert seen[0]["reasons"] == [
        "sdlc/runbooks: links outside the repository; write the artifact itself",
        "sdlc/runbooks/*.md: 0 file(s) match, at least 1 needed",
    ]
    for where in (journal_text(repo), report_of(repo), proc.stdout, proc.stderr):
        assert "host-private-name" not in where
    no_checkout_left(repo)


def _config(repo: Path, script: Path, **overrides: Any) -> RunConfig:
    values: dict[str, Any] = {
        "prompt": f"Harden. <promise>{TOKEN}</promise>",
        "completion_promise": TOKEN,
        "repo": repo,
        "model": f"script:{script}",
        "max_iterations": 1,
        "sandbox": "none",
        "quiet": True,
        "verify": ["test -f notes.txt"],
    }
    values.update(overrides)
    return RunConfig(**values)


IGNORED_NOTES = "echo kept > notes.txt && echo notes.txt > .gitignore"


def test_commit_then_gate_on_that_commit(tmp_path: Path) -> None:
    """The iteration is committed before the gate runs; the gate judges that commit, and a
    file the agent's .gitignore hides is not in it."""
    repo = make_repo(tmp_path / "repo")
    script = write_script(
        tmp_path / "s.yaml",
        [[{"text": "Notes.", "tools": [{"bash": {"command": IGNORED_NOTES}}]}, PROMISE]],
    )
    recorder = Recorder()
    result = execute(_config(repo, script), [recorder])
    assert result.status == "max_iterations"
    names = [name for name, it, _ in recorder.events if it == 1]
    assert names[-3:] == ["commit", "promise_seen", "iteration_ended"]
    data = {name: d for name, it, d in recorder.events if it == 1}
    assert data["promise_seen"]["judged_commit"] == data["commit"]["sha"]
    assert data["iteration_ended"]["commit"] == data["commit"]["sha"]
    assert data["promise_seen"]["reasons"][0].startswith("verify `test -f notes.txt` exited 1")
    assert (repo / "notes.txt").is_file()
    no_checkout_left(repo)


def test_without_commits_the_gate_judges_the_working_tree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    script = write_script(
        tmp_path / "s.yaml",
        [[{"text": "Notes.", "tools": [{"bash": {"command": IGNORED_NOTES}}]}, PROMISE]],
    )
    recorder = Recorder()
    result = execute(_config(repo, script, no_commit=True), [recorder])
    assert result.status == "completed"
    [seen] = [d for name, _, d in recorder.events if name == "promise_seen"]
    assert (seen["judged"], seen["judged_commit"], seen["accepted"]) == ("working tree", None, True)
    assert "(judged on the working tree: --no-commit)" in report_of(repo)


def test_an_iteration_that_changed_nothing_is_judged_on_the_last_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "notes.txt": "committed\n"})
    script = write_script(tmp_path / "s.yaml", [[PROMISE]])
    recorder = Recorder()
    result = execute(_config(repo, script), [recorder])
    assert result.status == "completed"
    [seen] = [d for name, _, d in recorder.events if name == "promise_seen"]
    assert seen["judged_commit"] == git(repo, "rev-parse", "main")
    assert "commit" not in [name for name, _, _ in recorder.events]
    no_checkout_left(repo)


def test_a_later_check_sees_a_fresh_checkout_of_the_later_commit(tmp_path: Path) -> None:
    """The run's gate checkout is reused: brought to the new commit, with everything the
    last verify commands wrote (ignored or read-only) gone, and removed at the end."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", ".gitignore": "build/\n"})
    write_notes = {"bash": {"command": "echo kept > notes.txt"}}
    script = write_script(
        tmp_path / "s.yaml",
        [[PROMISE], [{"text": "Notes.", "tools": [write_notes]}, PROMISE]],
    )
    verify = (
        "test ! -e build && test ! -e stray.txt && mkdir -p build/out && touch build/out/x "
        "stray.txt && chmod 500 build/out build && echo changed >> README.md && test -f notes.txt"
        " && grep -qx '# app' README.md"
    )
    recorder = Recorder()
    result = execute(_config(repo, script, verify=[verify], max_iterations=2), [recorder])
    seen = [d for name, _, d in recorder.events if name == "promise_seen"]
    assert [s["accepted"] for s in seen] == [False, True], seen
    assert seen[0]["reasons"][0].startswith(f"verify `{verify}` exited 1")
    assert result.status == "completed"
    commits = [d["sha"] for name, _, d in recorder.events if name == "commit"]
    assert [s["judged_commit"] for s in seen] == [git(repo, "rev-parse", "main"), commits[0]]
    no_checkout_left(repo)


def test_verify_output_left_in_a_read_only_directory_is_cleaned_up(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "notes.txt": "committed\n"})
    script = write_script(tmp_path / "s.yaml", [[PROMISE]])
    verify = "mkdir -p build/out && touch build/out/x && chmod 500 build/out build && true"
    result = execute(_config(repo, script, verify=[verify]), [])
    assert result.status == "completed"
    no_checkout_left(repo)


# --- matching files without following links out of the repository ---------------------------


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """A repository whose sdlc/ holds real files, links inside it and links out of it."""
    host = tmp_path / "host"
    (host / "deep").mkdir(parents=True)
    (host / "host-name.md").write_text("x")
    (host / "deep" / "deeper-name.md").write_text("x")
    repo = tmp_path / "repo"
    (repo / "sdlc" / "runbooks").mkdir(parents=True)
    (repo / "sdlc" / "runbooks" / "db.md").write_text("x")
    (repo / "sdlc" / "notes").symlink_to(host)
    (repo / "sdlc" / "secret.md").symlink_to(host / "host-name.md")
    (repo / "sdlc" / "alias").symlink_to("runbooks")
    return repo


def test_globs_never_follow_links_out(linked: Path) -> None:
    def names(pattern: str) -> tuple[list[str], list[str]]:
        files, links = matching_files(linked, pattern)
        return [p.relative_to(linked).as_posix() for p in files], links

    assert names("sdlc/notes/*.md") == ([], ["sdlc/notes"])
    assert names("sdlc/*/*.md") == (["sdlc/alias/db.md", "sdlc/runbooks/db.md"], ["sdlc/notes"])
    assert names("sdlc/**/*.md") == (["sdlc/runbooks/db.md"], ["sdlc/secret.md"])
    assert names("sdlc/secret.md") == ([], ["sdlc/secret.md"])
    assert names("sdlc/alias/db.md") == (["sdlc/alias/db.md"], [])
    assert names("sdlc/missing/*.md") == ([], [])
    assert names("**/*.md") == (["sdlc/runbooks/db.md"], ["sdlc/secret.md"])

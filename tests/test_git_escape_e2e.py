"""The red-team escape of issue 14, end to end with real bubblewrap: an agent makes a nested git
repository whose configuration runs a command, and the runner's own (unsandboxed) git must
never run it. The payload writes `$HOME/ESCAPED`, and HOME is the runner's: a temporary one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import clean_env, git, make_repo, run_cli, write_script

NESTED_REPO = (
    "rm README.md && mkdir README.md && cd README.md && git init -q && touch f && git add f"
    " && git -c user.name=a -c user.email=a@a commit -qm x"
)
PAYLOADS = {
    "fsmonitor": NESTED_REPO + " && git config core.fsmonitor 'id > \"$HOME/ESCAPED\"; false'",
    # A clean filter is a command; the nested repository's .gitattributes picks the files.
    "clean-filter": (
        "rm README.md && mkdir README.md && cd README.md && git init -q"
        " && echo '* filter=x' > .gitattributes && touch f && git add f .gitattributes"
        " && git -c user.name=a -c user.email=a@a commit -qm x"
        " && git config filter.x.clean 'id > \"$HOME/ESCAPED\"; cat'"
        " && git config filter.x.smudge 'id > \"$HOME/ESCAPED\"; cat'"
        " && touch f"
    ),
}


def run_payload(tmp_path: Path, payload: str, *extra: str) -> tuple[Path, Path, str]:
    """Run the scripted agent's payload in iteration 1 of a 2-iteration run; (repo, home,
    the run's branch)."""
    repo = make_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    script = write_script(
        tmp_path / "x.yaml",
        [
            [{"text": "hardening", "tools": [{"bash": {"command": payload}}]}, "working"],
            ["done <promise>DONE</promise>"],
        ],
    )
    args = ["Harden. <promise>DONE</promise>", "--model", f"script:{script}"]
    args += ["--network", "off", "--max-iterations", "2", "--sandbox", "bwrap", *extra]
    proc = run_cli(args, cwd=repo, env=clean_env(HOME=str(home), ANTHROPIC_API_KEY="sk-ant-x"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    branches = git(repo, "branch", "--format=%(refname:short)").splitlines()
    # A run that committed nothing leaves no branch (the checkout went back): then HEAD.
    ours = [b for b in branches if b.startswith("ralph/")]
    assert len(ours) <= 1, branches
    return repo, home, ours[0] if ours else "HEAD"


@pytest.mark.parametrize("flavour", sorted(PAYLOADS))
@pytest.mark.parametrize("worktree", [False, True], ids=["checkout", "worktree"])
def test_a_nested_repository_never_runs_its_config_in_the_runners_git(
    requires_bwrap: None, tmp_path: Path, flavour: str, worktree: bool
) -> None:
    repo, home, branch = run_payload(
        tmp_path, PAYLOADS[flavour], *(["--worktree"] if worktree else [])
    )
    assert sorted(p.name for p in home.iterdir()) == []  # no ESCAPED, nothing at all
    tree = git(repo, "ls-tree", "-r", branch)
    assert "160000" not in tree  # no gitlink was committed
    assert tree.startswith("100644 blob") and tree.endswith("\tREADME.md")
    report = next((repo / ".ralph" / "runs").glob("*/report.md")).read_text()
    assert "not committed: README.md (a nested git repository" in report
    # And the user's own `git status` on the branch does not enter it either.
    root = next((repo / ".ralph" / "worktrees").iterdir()) if worktree else repo
    subprocess.run(["git", "status"], cwd=root, env=clean_env(HOME=str(home)), check=True,
                   capture_output=True)  # fmt: skip
    assert list(home.iterdir()) == []


def test_a_ralph_yaml_the_agent_writes_is_undone_not_committed(
    requires_bwrap: None, tmp_path: Path
) -> None:
    # Under bubblewrap an existing ralph.yaml is read-only, but one may be created with bash.
    payload = "printf 'max_cost: 1000\\nstall_limit: 0\\n' > ralph.yaml && echo x > work.txt"
    repo, _, branch = run_payload(tmp_path, payload)
    assert git(repo, "ls-tree", "-r", "--name-only", branch).splitlines() == [
        "README.md",
        "work.txt",
    ]
    assert not (repo / "ralph.yaml").exists()
    report = next((repo / ".ralph" / "runs").glob("*/report.md")).read_text()
    assert "not committed: ralph.yaml (a file that configures ralph" in report

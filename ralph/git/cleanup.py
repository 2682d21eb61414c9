"""What finished runs leave behind: an empty branch removed at the end of a run, and
`ralph clean` for the worktrees and branches of finished runs.

A branch is only deleted when git has its commits elsewhere (another branch, a remote) or
when it has none, unless forced: ralph never loses work it made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..status import RunStatus
from .repo import _current_branch, _git, _out, _status


def _branch_exists(main: Path, branch: str) -> bool:
    done = _git(main, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
    return done.returncode == 0


def unshared_commits(main: Path, branch: str) -> int:
    """How many commits of `branch` are on no other branch and no remote-tracking branch."""
    out = _out(
        main, "rev-list", "--count", f"refs/heads/{branch}", "--not",
        f"--exclude={branch}", "--branches", "--remotes",  # (--branches drops refs/heads/)
    )  # fmt: skip
    return int(out or 0)


def discard_if_empty(main: Path, root: Path, branch: str, base: str, origin: str | None) -> bool:
    """Remove a run's branch (and worktree) when the run committed nothing on it and left no
    uncommitted change in a worktree; the checkout goes back to `origin` (the branch or commit
    it was on). Whether it was removed."""
    if origin is None or not _branch_exists(main, branch):
        return False
    if _out(main, "rev-parse", f"refs/heads/{branch}") != base:
        return False
    if root != main:
        if _status(root):  # uncommitted work (--no-commit): keep it where it is
            return False
        _git(main, "worktree", "remove", "--force", str(root))
    elif _current_branch(main) == branch:
        _git(main, "checkout", "-q", origin)  # same commit: uncommitted changes come along
    _git(main, "branch", "-q", "-D", branch)
    return True


@dataclass
class Leftover:
    """One thing a finished run left: what was done with it, or why it was kept."""

    run_id: str
    what: str  # "worktree PATH" or "branch NAME"
    removed: bool
    why: str = ""


def clean(main: Path, runs: list[dict[str, object]], force: bool, dry_run: bool) -> list[Leftover]:
    """Remove the worktrees and branches of finished runs (`runs` from the journal)."""
    found: list[Leftover] = []
    current = _current_branch(main)
    for run in runs:
        status = str(run.get("status"))
        if status not in RunStatus.__members__.values() or not RunStatus(status).finished:
            continue  # running or resumable: its branch and worktree are still in use
        run_id, branch = str(run["id"]), str(run.get("branch") or "")
        worktree = run.get("worktree")
        if worktree and Path(str(worktree)).is_dir():
            path = Path(str(worktree))
            dirty = bool(_status(path))
            if dirty and not force:
                found.append(
                    Leftover(run_id, f"worktree {path}", False, "it has uncommitted changes")
                )
                continue
            if not dry_run:
                _git(main, "worktree", "remove", "--force", str(path))
            found.append(Leftover(run_id, f"worktree {path}", True))
        if not branch or not _branch_exists(main, branch):
            continue
        if branch == current:
            found.append(Leftover(run_id, f"branch {branch}", False, "it is checked out"))
            continue
        alone = unshared_commits(main, branch)
        if alone and not force:
            why = f"{alone} commit(s) on no other branch or remote: push or merge it first"
            found.append(Leftover(run_id, f"branch {branch}", False, why))
            continue
        if not dry_run:
            _git(main, "branch", "-q", "-D", branch)
        found.append(Leftover(run_id, f"branch {branch}", True))
    if not dry_run:
        _git(main, "worktree", "prune")
    return found

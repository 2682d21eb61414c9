"""A run's commits: who makes them, their message and trailers, and finding them again.

Each iteration's commit names its run and iteration in `Ralph-Run` / `Ralph-Iteration`
trailers, so a run's commits are found on its branch (`run_commits`) by report and resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..views.markdown import neutralise
from .repo import _git, _out

IDENTITY = ("ralph-loop", "ralph-loop@users.noreply.github.com")
SUMMARY_WIDTH = 72


def _identity_options(root: Path) -> list[str]:
    """`-c user.*` options with ralph's identity when the user configured none."""
    for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        if _git(root, "-c", "user.useConfigOnly=true", "var", var, check=False).returncode:
            return ["-c", f"user.name={IDENTITY[0]}", "-c", f"user.email={IDENTITY[1]}"]
    return []


def commit_message(
    prompt_name: str, i: int, n: int, summary: str, run_id: str, interrupted: bool = False
) -> str:
    """The commit message of iteration `i` of `n` (0: no limit, shown as ∞), with trailers."""
    if interrupted:
        subject = f"ralph({prompt_name}): iteration {i}{INTERRUPTED_SUFFIX}"
    else:
        line = neutralise(summary) or "no summary"
        if len(line) > SUMMARY_WIDTH:
            line = line[: SUMMARY_WIDTH - 1].rstrip() + "…"
        subject = f"ralph({prompt_name}): iteration {i}/{n if n else '∞'} — {line}"
    # The agent's words stay on the subject line (no trailer of theirs), redacted, and inert
    # once pushed: no mention, no issue closed, no CI skipped.
    return f"{neutralise(subject)}\n\nRalph-Run: {run_id}\nRalph-Iteration: {i}\n"


@dataclass(frozen=True)
class RunCommit:
    """A commit of a run on its branch, as its trailers name it."""

    sha: str
    iteration: int
    subject: str

    @property
    def interrupted(self) -> bool:
        """Made from what a stopped iteration left, not at the end of one (`commit_message`)."""
        return self.subject.endswith(INTERRUPTED_SUFFIX)


INTERRUPTED_SUFFIX = " (interrupted)"


def run_commits(main: Path, base: str, branch: str, run_id: str) -> list[RunCommit]:
    """Run `run_id`'s commits on `branch` since `base`, oldest first, found by their
    `Ralph-Run` / `Ralph-Iteration` trailers."""
    fmt = "%H%x1f%s%x1f%(trailers:key=Ralph-Run,valueonly,separator=,)%x1f" + (
        "%(trailers:key=Ralph-Iteration,valueonly,separator=,)%x1e"
    )
    raw = _out(main, "log", "--reverse", f"--format={fmt}", f"{base}..refs/heads/{branch}", "--")
    found = []
    for record in raw.split("\x1e"):
        parts = [part.strip() for part in record.strip().split("\x1f")]
        if len(parts) == 4 and parts[2] == run_id and parts[3].isdigit():
            found.append(RunCommit(parts[0], int(parts[3]), parts[1]))
    return found


def commit_files(root: Path, sha: str) -> list[str]:
    """The paths commit `sha` changed."""
    raw = _out(root, "diff-tree", "--no-commit-id", "--name-only", "-r", "-z", "--no-renames", sha)
    return [p for p in raw.split("\0") if p]

"""What a run leaves when it has ended: its pull request (--pr), and no empty branch."""

from __future__ import annotations

import contextlib
from typing import Any

from ..config import RunConfig
from ..events import Bus
from ..git import gitrun
from ..git.api import GitHubError
from ..git.cleanup import discard_if_empty
from ..git.pr import draft_for, pr_title, publish
from ..status import RunStatus
from ..views.markdown import text as md_text
from ..views.report import build_summary
from ..views.report_md import render_markdown
from .loop import RunResult


def after_run(
    cfg: RunConfig, workspace: Any, result: RunResult, bus: Bus, in_campaign: bool
) -> None:
    """Open the pull request a --pr run asks for (unless it was interrupted or stopped, to be
    resumed), and remove the branch of a finished run that committed nothing (a campaign's
    phase leaves its branch to the campaign)."""
    if cfg.pr and result.status not in (RunStatus.INTERRUPTED, RunStatus.STOPPED):
        result.pr_failed = not open_pull_request(cfg, workspace, result, bus)
    if RunStatus(result.status).finished and not cfg.no_commit and not in_campaign:
        drop_empty_branch(workspace, bus)


def open_pull_request(cfg: RunConfig, workspace: Any, result: RunResult, bus: Bus) -> bool:
    """Push the run branch and open or update its pull request; False when that failed."""
    span = f"{workspace.base_commit}..{workspace.branch}"
    count = gitrun.run(workspace.root, "rev-list", "--count", span, check=False).stdout.strip()
    if count in (b"", b"0"):
        bus.emit(
            "warning", level="warning", message="--pr: the run made no commit; no pull request"
        )
        return True
    summary = build_summary(workspace.main_repo, result.run_id, cfg)
    body = render_markdown(summary, for_pr=True) if summary else md_text(result.reason)
    try:
        pr = publish(
            workspace.root,
            workspace.branch,
            title=pr_title(cfg.prompt_name, result.status, result.iterations, cfg.max_iterations),
            body=body,
            remote=cfg.remote,
            base=cfg.pr_base,
            labels=cfg.pr_labels,
            draft=draft_for(result.status, cfg.pr_draft),
        )
    except GitHubError as exc:
        bus.emit("pull_request_failed", level="error", message=exc.message)
        return False
    bus.emit(
        "pull_request",
        url=pr.url,
        number=pr.number,
        created=pr.created,
        base=pr.base,
        draft=pr.draft,
    )
    for note in pr.notes:
        bus.emit("warning", level="warning", message=f"--pr: {note}")
    for problem in pr.problems:  # the pull request is there, but not as it was asked for
        bus.emit("pull_request_failed", level="error", message=problem)
    return not pr.problems


def drop_empty_branch(workspace: Any, bus: Bus) -> None:
    """A finished run that committed nothing leaves no empty branch (or worktree) behind."""
    origin = getattr(workspace, "origin", None)
    with contextlib.suppress(Exception):  # tidying up must not fail a finished run
        if discard_if_empty(
            workspace.main_repo, workspace.root, workspace.branch, workspace.base_commit, origin
        ):
            bus.emit(
                "warning",
                level="info",
                message=f"the run made no commit: its branch {workspace.branch} was removed"
                + (f" and the checkout is back on {origin}" if not workspace.worktree else ""),
            )

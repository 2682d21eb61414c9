"""Resuming a run: its config, branch and totals from the journal; credentials from the env."""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig, restore_config
from .errors import UsageError
from .gate import rejection_feedback
from .runner import ResumePoint


def resume_config(start: Path, run: str) -> tuple[RunConfig, ResumePoint]:
    """The config and starting point of run `run` (an id or unique prefix) in the repo at `start`."""
    from .journal import Journal, db_path
    from .workspace import find_main_repo

    main = find_main_repo(start)
    if main is None:
        raise UsageError(f"{start} is not inside a git repository; pass --repo DIR")
    if not db_path(main).exists():
        raise UsageError(f"no runs recorded in {main}; `ralph runs` lists them")
    journal = Journal.open(main, create=False)
    try:
        state = journal.resume_state(run)
    finally:
        journal.close()
    cfg = restore_config(state.config, main)
    point = ResumePoint(
        run_id=state.run_id,
        start=state.last_iteration + 1,
        usage=state.usage,
        cost_usd=state.cost_usd,
        elapsed_s=state.elapsed_s,
        branch=state.branch,
        worktree=state.worktree,
        base_commit=state.base_commit,
        feedback=rejection_feedback(state.rejected) if state.rejected else None,
    )
    return cfg, point

"""A campaign's one pull request (`ralph harden --pr`), opened when the campaign ends: its
branch pushed, the campaign's report as the body, a draft unless every phase completed. The
phases never open their own (`phase_config` turns `--pr` off for them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..git import gitrun
from ..git.api import GitHubError
from ..git.pr import draft_for, publish
from ..status import RunStatus
from .campaign import CampaignResult
from .hardening import render_campaign_markdown


def publish_campaign(
    cfg: RunConfig,
    main: Path,
    root: Path,
    row: dict[str, Any],
    result: CampaignResult,
    echo: Callable[[str], None],
) -> None:
    """Open (or update) the pull request of the campaign `row` (its journal row), whose branch
    is checked out in `root`; its url, or that it failed, goes into `result`. A campaign that
    made no commit has none."""
    branch, base = row.get("branch"), row.get("base_commit")
    if not branch or not base:
        return
    count = gitrun.run(root, "rev-list", "--count", f"{base}..{branch}", check=False)
    if count.stdout.strip() in (b"", b"0"):
        echo("ralph harden: --pr: the campaign made no commit; no pull request")
        return
    done = sum(o.status == RunStatus.COMPLETED for o in result.phases)
    title = f"ralph harden: {done} of {len(cfg.phases)} phases complete"
    try:
        pr = publish(
            root,
            branch,
            title=title,
            body=render_campaign_markdown(main, result.campaign_id, for_pr=True),
            remote=cfg.remote,
            base=cfg.pr_base,
            labels=cfg.pr_labels,
            draft=draft_for(result.status, cfg.pr_draft),
        )
    except GitHubError as exc:
        echo(f"ralph harden: --pr failed: {exc.message}")
        result.pr_failed = True
        return
    result.pr_url = pr.url
    result.pr_failed = bool(pr.problems)
    for line in [*pr.notes, *pr.problems]:
        echo(f"ralph harden: --pr: {line}")
    echo(f"ralph harden: pull request {pr.url}")

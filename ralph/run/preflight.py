"""Before a run touches git: the checks that refuse bad input (exit 2) and `--dry-run`.

Nothing here creates anything (no branch, no `.ralph/`, no journal), so a dry run makes the
same checks as a run and refuses what the run would refuse, the same way.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from .. import agents, models
from ..config import RunConfig
from ..errors import UsageError
from ..git import repo as git_repo
from ..git.api import GitHubError
from ..git.pr import preflight as pr_preflight
from ..models import model_pricing
from ..models.base import Model
from ..tools import make_toolset
from ..tools.probe import choose_sandbox
from . import tasklist
from .messages import iteration_message, system_prompt


def preflight(cfg: RunConfig, resuming: bool = False) -> Model:
    """The checks a run makes before it touches git (model, credentials, prices, agent CLIs,
    sandbox, --pr); the model. Creates nothing, so --dry-run makes them too."""
    agents.preflight(cfg)  # the agent CLIs: installed, recent enough, logged in
    builtin = None
    if "builtin" in (cfg.agent, cfg.fallback_agent):
        builtin = models.make_model(cfg)  # looked up here: tests and benchmarks replace it
        check_pricing(cfg, builtin)
    model = (
        builtin if builtin is not None and cfg.agent == "builtin" else agents.CliModel(cfg, builtin)
    )
    # A sandbox that cannot work: error before git (a worktree is checked once it exists).
    choose_sandbox(cfg.sandbox, cfg.network, None if cfg.worktree else cfg.repo)
    check_pr(cfg)
    if cfg.tasks and not resuming:  # a malformed task file: exit 2 before anything is created
        # (A resumed run reads it from its branch, which may be in a worktree.)
        tasklist.check(cfg.repo, cfg.tasks)
    return model


def check_pricing(cfg: RunConfig, model: Model) -> None:
    """--max-cost needs the model's price."""
    if cfg.max_cost is not None and model_pricing(model.name, cfg) is None:
        raise UsageError(
            f"--max-cost needs a price for model {model.name!r}, and none is known; set "
            f"RALPH_PRICING='{{{model.name}: {{input: USD, output: USD}}}}' (per million "
            "tokens; a repository file cannot give one) or use --max-tokens"
        )


def check_pr(cfg: RunConfig) -> None:
    """--pr problems that would only show at the end of a long run: report them now."""
    if not cfg.pr:
        return
    if cfg.no_commit:
        raise UsageError("--pr needs commits to push; drop --no-commit")

    try:  # token, remote, repository access and push credentials, before any model call
        pr_preflight(cfg.repo, cfg.remote, base=cfg.pr_base, environ=os.environ)
    except GitHubError as exc:
        raise UsageError(exc.message) from None


def dry_run(cfg: RunConfig, out: TextIO = sys.stdout) -> None:
    """Print the resolved config and the first request that would be sent.

    Input a run would refuse is refused the same way (same checks, exit 2), and, like those
    checks, a dry run creates nothing: no branch, no `.ralph/`, no journal.
    """
    preflight(cfg)
    git_repo.check(cfg)
    tools, warnings = make_toolset(cfg, cfg.repo)
    system, prompt = system_prompt(cfg.repo, cfg.completion_promise), cfg.prompt
    if cfg.tasks:  # the first task, as the run would choose it
        system = tasklist.system_prompt(cfg.repo)
        prompt = tasklist.first_prompt(cfg.repo, cfg.tasks, cfg.prompt)
    request: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": cfg.max_output_tokens,
        "system": system,
        "tools": tools.definitions(),
        "messages": [
            {
                "role": "user",
                "content": iteration_message(prompt, 1, cfg.max_iterations, None),
            }
        ],
    }
    shown: dict[str, Any] = {"config": cfg.to_dict(), "warnings": warnings, "request": request}
    if cfg.agent != "builtin":
        # What an agent CLI is given instead of that request: its command and standard input.
        shown["request"] = agents.first_command(
            cfg, request["system"], request["messages"][0]["content"]
        )
    json.dump(shown, out, indent=2)
    out.write("\n")

"""A fleet run's settings as a worker resolves them, with the workflow's input held to the
rule of a repository file.

Whoever can start workflows on the workers' Temporal namespace writes a workflow's input: its
`settings` and its prompt (text, front matter and all). The worker's own configuration (its
environment's RALPH_* variables and the defaults) is the operator's; the workflow's settings
and the front matter of a prompt it gives as text may only tighten it
(trust.check_override_layer): a lower limit, a stricter sandbox or network, more verify
commands. The repository's ralph.yaml is not part of that measure: it is a repository file,
below the workflow's settings and held to the repository-file rule as in any run; the agent
edits it on the run branch, where each iteration reads it again, so a ralph.yaml it tightened
must not make the workflow's settings look loose. A prompt that names a file on the worker is refused: a fleet sends a
prompt file's text, never its path, and a file outside the repository would be the
operator's, its front matter trusted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .. import trust
from ..config import RunConfig, build_config
from ..errors import UsageError
from ..layers import parse_layer
from ..run.campaign import campaign_config
from ..run.prompt import builtin_path, load_prompt
from ..settings import ANY, LOWER, SETTINGS, RepoRule
from .model import RepoJob

# What a workflow may choose that no repository file may: which task list, and a campaign's
# phases (its phase iterations only up to the workers' max_iterations, as a limit).
WORKFLOW_RULES: dict[str, RepoRule] = {
    "tasks": ANY,
    "phases": ANY,
    "stop_on_failure": ANY,
    "phase_max_iterations": LOWER,
}
# The prompt of the baseline when the workflow's prompt is text: its front matter is not the
# operator's, so the baseline has none.
_NEUTRAL_PROMPT = "A fleet run (the workflow gives the prompt). <promise>FLEET</promise>\n"


def run_config(job: RepoJob, root: Path, **fleet: Any) -> RunConfig:
    """The run's RunConfig as this worker resolves it: defaults < the repository's ralph.yaml
    (which may only tighten) < front matter < this worker's RALPH_* < the fleet's settings
    (a campaign's: `campaign_config`). `fleet`: settings the fleet itself decides. The
    workflow's settings and its prompt's front matter may only tighten what the worker's own
    configuration gives, the repository's ralph.yaml left out (a UsageError says which and
    how to allow it)."""
    flags = parse_layer(job.settings, f"fleet settings of {job.name}")
    decided: dict[str, Any] = {"pr": False, **fleet}  # the fleet opens the PR when it ends
    baseline = _baseline(job, decided)
    trust.check_override_layer(flags, f"fleet settings of {job.name}", baseline, WORKFLOW_RULES)
    flags.update(decided)
    if job.campaign:
        return campaign_config(flags, root)
    return build_config(job.prompt, flags, root)


def _baseline(job: RepoJob, decided: dict[str, Any]) -> dict[str, Any]:
    """Each setting as the worker's own configuration gives it (the defaults, its RALPH_*
    variables, a built-in prompt's front matter), without the workflow's."""
    # An empty directory for the repository: none of the repository's files (ralph.yaml) count.
    with tempfile.TemporaryDirectory(prefix="ralph-fleet-baseline-") as empty:
        return _measure(job, Path(empty), decided)


def _measure(job: RepoJob, root: Path, decided: dict[str, Any]) -> dict[str, Any]:
    if job.campaign:
        cfg = campaign_config(dict(decided), root)
    else:
        trusted_prompt = builtin_path(job.prompt) is not None
        if job.prompt.strip() == "-":  # load_prompt would read the worker's stdin
            raise UsageError(
                f"the prompt of {job.name} is `-` (standard input), which a worker does not "
                "have; a workflow gives a built-in prompt's name or the prompt's text"
            )
        if not trusted_prompt:
            spec = load_prompt(job.prompt)
            if spec.path is not None and not spec.is_builtin:
                raise UsageError(
                    f"the prompt of {job.name} names a file on the worker ({spec.path}); a "
                    "workflow gives a built-in prompt's name or the prompt's text "
                    "(`ralph fleet submit` sends a prompt file's text)"
                )
        cfg = build_config(job.prompt if trusted_prompt else _NEUTRAL_PROMPT, decided, root)
        baseline = _values(cfg)
        if not trusted_prompt:
            where = f"the front matter of the prompt {job.name}'s workflow gives"
            trust.check_override_layer(spec.settings, where, baseline, WORKFLOW_RULES)
        return baseline
    return _values(cfg)


def _values(cfg: RunConfig) -> dict[str, Any]:
    """The settings of `cfg` by name; phase iterations, when the worker leaves them to the
    prompts, measured from its max_iterations."""
    values = {name: getattr(cfg, name) for name in SETTINGS}
    if values["phase_max_iterations"] is None:
        values["phase_max_iterations"] = values["max_iterations"]
    return values

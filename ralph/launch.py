"""Starting and continuing runs from the command line: a run (`execute_run`, for the run
command), `ralph harden`'s campaign, and `ralph resume` of a run or a campaign.

cli.py registers the commands on the app. The runner, the campaign and the live view are
imported when a run starts, so `ralph --help` and `ralph-loop`'s start-up load none of them
(benchmarks/bench_start.py).
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated, Any

import typer

from . import layers
from .cli_base import (
    REPO_HELP,
    RUN_ARG_HELP,
    exit_with,
    fail,
    given,
    note,
    option,
    setting_options,
    with_parameters,
)
from .config import repo_dir
from .errors import RalphError
from .run.signals import STOP
from .settings import HARDEN_OPTIONS, OPTIONS
from .status import RunStatus
from .text import clean
from .views.logs import install_json_stderr, settings_log_format


def execute_run(cfg: Any, resume: Any = None) -> int:
    """Run `cfg` (a new run, or resuming at `resume`) with its observers; its exit code."""
    from .run.runner import execute  # the runner and what it runs: loaded when a run starts
    from .views.ui import make_observers  # the live view (rich): only for a run

    if cfg.log_format == "json":
        install_json_stderr()  # warnings, library logs and tracebacks as JSON lines too
    STOP.settle_until_exit = True  # this process ends with the run
    result = execute(cfg, make_observers(cfg), resume)
    return int(result.exit_code)


def resume_run(
    run: str,
    repo: Path | None,
    more: int | None = None,
    display: dict[str, Any] | None = None,
    budgets: dict[str, Any] | None = None,
) -> None:
    """Continue an interrupted, crashed or killed run (`more`: or a finished one, further);
    `display`: --log-format, --quiet, --verbose as given (None: not given); `budgets`:
    --max-cost, --max-tokens, --timeout as given."""
    try:
        from .run.resume import display_settings, resume_config  # the runner's set-up: heavy

        shown = display_settings(display or {})
        settings_log_format(shown.get("log_format"))  # errors from here on follow it
        root = repo_dir(repo).resolve()
        from .run.campaign import campaign_of  # the campaign's machinery (git, models)

        if campaign_of(root, run) is not None:  # a campaign, or one of its phases' runs
            resume = {"start": root, "ref": run, "display": shown, "more": more, "budgets": budgets}
            exit_with(_run_campaign(None, resume))
        cfg, point = resume_config(root, run, more, shown, budgets)
        exit_with(execute_run(cfg, point))
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


# --- ralph harden: the campaign (campaign.py); the run's options but the per-prompt ones ----

HARDEN_HELP = (
    "Harden the repository in one campaign: the built-in loops (security, reliability, "
    "observability, incident-response) one after another on one branch, each with its own "
    "promise, gate and iteration limit, then a task-list run (remediate) over the "
    "remediation tasks they filed. --max-cost, --max-tokens and --timeout cover the whole "
    "campaign; a phase that ends without its promise is reported and the campaign goes on "
    "(--stop-on-failure stops there). `ralph resume CAMPAIGN` continues where it stopped."
)
# What each phase's prompt decides, or the campaign does itself.
_NOT_FOR_HARDEN = {"completion_promise", "tasks", "max_iterations", "dry_run"}


_HARDEN_SETTINGS = [*HARDEN_OPTIONS, *(s for s in OPTIONS if s.name not in _NOT_FOR_HARDEN)]


def harden_command(**options: Any) -> None:
    """`ralph harden`: its options are generated from the settings table (below)."""
    repo = options.pop("repo")
    chosen = given(_HARDEN_SETTINGS, options)
    try:
        from .run.campaign import campaign_config  # with its phases' machinery: when one runs

        cfg = campaign_config(
            layers.parse_layer(chosen, layers.COMMAND_LINE),
            repo,
            note=lambda text, c: note(text, c.log_format == "json"),
        )
        exit_with(_run_campaign(cfg))
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


# HARDEN_OPTIONS have no following options; the run's keep theirs (--repo after --model).
with_parameters(
    harden_command,
    [option(s) for s in HARDEN_OPTIONS]
    + setting_options(s for s in OPTIONS if s.name not in _NOT_FOR_HARDEN),
)


def _campaign_echo(line: str) -> None:
    sys.stderr.write(clean(line) + "\n")
    sys.stderr.flush()


def _run_campaign(cfg: Any, resume: dict[str, Any] | None = None) -> int:
    """Run campaign `cfg`, or resume one (`resume`: resume_campaign's arguments); the exit
    code, after its closing lines on stderr (and with --output-format json its result)."""
    from .run.campaign_run import resume_campaign, run_campaign  # heavy: only when a campaign runs
    from .views.ui import make_observers  # the live view (rich): only for a run

    if cfg is not None and cfg.log_format == "json":
        install_json_stderr()
    STOP.settle_until_exit = True
    shown = cfg.output_format if cfg is not None else (resume or {})["display"].get("output_format")
    # --output-format json: stdout holds the campaign's result alone; the phases' own
    # summaries go to stderr with the rest of what is shown.
    quiet_stdout = redirect_stdout(sys.stderr) if shown == "json" else nullcontext()
    with quiet_stdout:
        if resume is not None:
            result = resume_campaign(observers_for=make_observers, echo=_campaign_echo, **resume)
        else:
            result = run_campaign(cfg, make_observers, _campaign_echo)
    lines = [f"ralph harden: campaign {result.campaign_id} {result.status}: {result.reason}"]
    for outcome in result.phases:
        lines.append(f"  {outcome.phase:<18} {outcome.status}: {outcome.reason}")
    if result.report is not None:
        lines.append(f"  report: {result.report}")
    if result.branch:
        lines.append(f"  branch: {result.branch}")
    if result.pr_url:
        lines.append(f"  pull request: {result.pr_url}")
    if _resumable(result.status):
        lines.append(f"  resume: ralph resume {result.campaign_id}")
    elif result.going_on():
        lines.append(f"  go on: {result.going_on()}")
    for line in lines:
        _campaign_echo(line)
    if shown == "json":
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
    return int(result.exit_code)


def _resumable(status: str) -> bool:
    return RunStatus(status).resumable


_BUDGET_HELP = {
    name: f"A new budget for the whole run, or campaign (it counts what was spent): {what}"
    for name, what in (
        ("max_cost", "stop when it has cost this many USD."),
        ("max_tokens", "stop after this many billed tokens."),
        ("timeout", "stop after this much wall time (90s, 45m, 8h)."),
    )
}


def resume_cmd(
    run: Annotated[str, typer.Argument(help=RUN_ARG_HELP)],
    repo: Annotated[
        Path | None,
        typer.Option(help=REPO_HELP, show_default=False),
    ] = None,
    more: Annotated[
        int | None,
        typer.Option(
            "--more",
            metavar="N",
            help="Go on for N more iterations; also continues a run that stopped at "
            "--max-iterations, a budget or the stall guard (one that completed is done). "
            "A campaign: N more for the phase it goes on with.",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="auto | plain | json | rich (default: RALPH_LOG_FORMAT, else auto).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool | None,
        typer.Option(
            "--quiet/--no-quiet", "-q", help="Print only the final summary.", show_default=False
        ),
    ] = None,
    verbose: Annotated[
        bool | None,
        typer.Option(
            "--verbose/--no-verbose", "-v", help="Show tool outputs too.", show_default=False
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(help="text | json: the result on stdout.", show_default=False),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(metavar="USD", help=_BUDGET_HELP["max_cost"], show_default=False),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(metavar="N", help=_BUDGET_HELP["max_tokens"], show_default=False),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help=_BUDGET_HELP["timeout"], show_default=False),
    ] = None,
) -> None:
    """Resume an interrupted, crashed or killed run or campaign where it stopped, or continue
    one."""
    display = {
        "log_format": log_format, "quiet": quiet, "verbose": verbose,
        "output_format": output_format,
    }  # fmt: skip
    budgets = {"max_cost": max_cost, "max_tokens": max_tokens, "timeout": timeout}
    resume_run(run, repo, more, display, budgets)

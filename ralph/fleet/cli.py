"""`ralph fleet ...`: the command group. Light on purpose (typer only): `ralph` builds it at
start-up; Temporal's SDK is imported when a fleet command runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..cli_base import fail
from ..errors import RalphError
from . import require_extra

fleet_app = typer.Typer(
    name="fleet",
    help="Many repositories on Temporal: workers, fleets, schedules (needs the `fleet` extra).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="HOST:PORT",
        help="Temporal frontend (default: TEMPORAL_ADDRESS or localhost:7233).",
        show_default=False,
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        help="Temporal namespace (default: TEMPORAL_NAMESPACE or default).", show_default=False
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _call(work: Callable[[Any, Any], Any], address: str | None, namespace: str | None) -> Any:
    """Check the extra, run `work(service, (address, namespace))`; errors as one line."""
    try:
        require_extra()
        from . import service  # temporalio: 0.3 s, only for a fleet command

        where = (address or service.default_address(), namespace or service.default_namespace())
        return service.run(work(service, where))
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


@fleet_app.command("worker")
def worker_cmd(
    address: Address = None,
    namespace: Namespace = None,
    task_queue: Annotated[str, typer.Option(help="Task queue to poll.")] = "ralph-fleet",
    slots: Annotated[int, typer.Option(min=1, help="Iterations run at a time.")] = 1,
    dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the worker keeps its checkouts (default ~/.cache/ralph/fleet).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run fleet iterations from Temporal until SIGINT/SIGTERM; credentials (ANTHROPIC_API_KEY,
    GITHUB_TOKEN, ...) come from this environment."""
    workdir = dir or Path.home() / ".cache" / "ralph" / "fleet"
    _call(
        lambda s, w: s.run_worker(w[0], w[1], task_queue, slots, workdir, sys.stdout),
        address,
        namespace,
    )


@fleet_app.command("submit")
def submit_cmd(
    fleet_file: Annotated[Path, typer.Argument(metavar="FLEET.yaml", help="The fleet file.")],
    address: Address = None,
    namespace: Namespace = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the fleet; exit with the worst run's code.")
    ] = False,
) -> None:
    """Start a fleet: one workflow per repository of FLEET.yaml."""
    code = _call(
        lambda s, w: s.submit(w[0], w[1], fleet_file, wait, sys.stdout), address, namespace
    )
    raise typer.Exit(int(code or 0))


@fleet_app.command("schedule")
def schedule_cmd(
    fleet_file: Annotated[Path, typer.Argument(metavar="FLEET.yaml", help="The fleet file.")],
    cron: Annotated[str, typer.Option(help='When, as cron in UTC: "0 2 * * *" is 02:00 nightly.')],
    id: Annotated[
        str | None,
        typer.Option("--id", help="Schedule id (default ralph-fleet-NAME).", show_default=False),
    ] = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Submit FLEET.yaml on a Temporal Schedule (created, or updated if it exists)."""
    _call(lambda s, w: s.schedule(w[0], w[1], fleet_file, cron, id, sys.stdout), address, namespace)


@fleet_app.command("status")
def status_cmd(
    fleet: Annotated[
        str | None,
        typer.Option(help="Only this fleet's runs (its workflow id).", show_default=False),
    ] = None,
    as_json: AsJson = False,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """A table of fleet runs: repository, prompt, status, iterations, cost."""
    _call(lambda s, w: s.status(w[0], w[1], fleet, as_json, sys.stdout), address, namespace)


@fleet_app.command("show")
def show_cmd(
    workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW", help="A run's or fleet's id.")],
    as_json: AsJson = False,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """One run's iterations (or a fleet's runs and budget), as its workflow holds them."""
    _call(lambda s, w: s.show(w[0], w[1], workflow_id, as_json, sys.stdout), address, namespace)


@fleet_app.command("cancel")
def cancel_cmd(
    workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW", help="A run's or fleet's id.")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Cancel a run (or a whole fleet): the iteration in flight ends as interrupted."""
    _call(lambda s, w: s.cancel(w[0], w[1], workflow_id, sys.stdout), address, namespace)


@fleet_app.command("steer")
def steer_cmd(
    workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW", help="A run's id.")],
    text: Annotated[str, typer.Argument(help="Guidance for the next iteration (- reads stdin).")],
    keep: Annotated[
        bool, typer.Option("--keep", help="Give it to every coming iteration, not just the next.")
    ] = False,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Guide a run's next iteration, as `ralph steer` does for a local run."""
    if text == "-":
        text = sys.stdin.read()
    _call(lambda s, w: s.steer(w[0], w[1], workflow_id, text, keep, sys.stdout), address, namespace)

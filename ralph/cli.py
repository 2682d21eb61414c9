"""The command line: the Typer app and its entry points (`ralph`, `ralph-loop`), the run
command, and how a run's result or error becomes the exit code (errors.py ExitCode).

The run command is a thin layer over the settings table: one option per setting of
settings.py, generated (cli_base.py), and one `build_config` from what was given. The other
sub-commands are in launch.py (harden, resume) and commands.py (the rest), registered here.
"""

from __future__ import annotations

import atexit
import inspect
import os
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from . import commands, config, launch, layers
from .cli_base import exit_with, fail, given, note, setting_options, with_parameters
from .config import RunConfig
from .errors import EXIT_CODES_HELP, RalphError
from .layers import option_name
from .settings import OPTIONS
from .views.logs import run_app

RUN_HELP = (
    "Run PROMPT against a git repository in a Ralph loop until the agent's final message "
    "carries <promise>TOKEN</promise> (checked by the completion gate), --max-iterations is "
    "reached, or a guard stops it. PROMPT is a prompt file, - for stdin, a built-in name "
    "(security, observability, incident-response, reliability) or the prompt text itself. "
    "Settings also come from ralph.yaml, the prompt's front matter and RALPH_<SETTING> "
    "variables (e.g. RALPH_MAX_COST=20); an option given here wins."
)

CONTEXT = {"help_option_names": ["-h", "--help"]}  # -V / --version: see logs.run_app

app = typer.Typer(
    name="ralph",
    help="ralph-loop: hardening prompts run against a git repository in a Ralph loop.",
    no_args_is_help=True,
    add_completion=False,
    epilog=EXIT_CODES_HELP,
    rich_markup_mode=None,
    context_settings=CONTEXT,
)


def build_config(prompt: str, flags: dict[str, Any], repo: Path | None) -> RunConfig:
    """config.build_config, with its note about the prompt printed on stderr."""
    return config.build_config(
        prompt, flags, repo, note=lambda text, cfg: note(text, cfg.log_format == "json")
    )


# --- the run command: one option per setting of settings.py, plus these -------------------

_PROMPT = inspect.Parameter(
    "prompt",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        str | None,
        typer.Argument(help="Prompt file, -, built-in name or text.", show_default=False),
    ],
)
_RESUME = inspect.Parameter(
    "resume",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Resume run RUN with its recorded settings instead of starting one.",
            show_default=False,
        ),
    ],
)


def run_command(**options: Any) -> None:
    prompt, repo, resume = options.pop("prompt"), options.pop("repo"), options.pop("resume")
    if prompt is None and not resume:
        raise fail("missing PROMPT: give a prompt file, - for stdin, a built-in name or text")
    chosen = given(OPTIONS, options)
    if resume:
        from .run.guards import BUDGETS  # guards and resume load the runner's modules: only here
        from .run.resume import DISPLAY  # (the same: only when resuming)

        display = {k: chosen.pop(k) for k in DISPLAY if k in chosen}  # how it is shown: yours
        budgets = {k: chosen.pop(k) for k in BUDGETS if k in chosen}  # the operator may raise
        _refuse_resume_overrides(prompt, chosen)
        launch.resume_run(resume, repo, display=display, budgets=budgets)
        return
    try:
        cfg = build_config(prompt, layers.parse_layer(chosen, layers.COMMAND_LINE), repo)
        if cfg.dry_run:
            from .run.preflight import dry_run  # the run's checks and tools: only for a dry run

            dry_run(cfg)
            return
        exit_with(launch.execute_run(cfg))
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


with_parameters(run_command, [_PROMPT, *setting_options(OPTIONS), _RESUME])


def _refuse_resume_overrides(prompt: str | None, chosen: dict[str, Any]) -> None:
    """A resumed run keeps the prompt and settings it started with (its budgets are counted
    from the start), so anything else on the command line is refused, not silently ignored."""
    if prompt is not None:
        raise fail(
            "--resume RUN takes no PROMPT: the run continues with its own; drop the PROMPT, "
            "or drop --resume to start a new run"
        )
    if chosen:
        names = ", ".join(option_name(name) for name in chosen)
        raise fail(
            f"--resume RUN continues the run with the settings it started with; {names} "
            "cannot be changed on resume (start a new run to use other settings)"
        )


# The commands of `ralph`, in the order --help lists them.
app.command("run", help=RUN_HELP, epilog=EXIT_CODES_HELP)(run_command)
app.command("harden", help=launch.HARDEN_HELP, epilog=EXIT_CODES_HELP)(launch.harden_command)
app.command("resume", epilog=EXIT_CODES_HELP)(launch.resume_cmd)
app.command("runs")(commands.runs_cmd)
app.command("show")(commands.show_cmd)
app.command("clean")(commands.clean_cmd)
app.command("prompts")(commands.prompts_cmd)
app.command("init")(commands.init_cmd)
app.command("demo", epilog=EXIT_CODES_HELP)(commands.demo_cmd)
app.command("steer")(commands.steer_cmd)
app.command("stop")(commands.stop_cmd)
app.command("watch", epilog=EXIT_CODES_HELP)(commands.watch_cmd)


def _add_fleet() -> None:
    """`ralph fleet ...` (Temporal): its Typer group is light; the SDK loads when one runs."""
    from .fleet.cli import fleet_app  # only `ralph`, not `ralph-loop`, has sub-commands

    app.add_typer(fleet_app, name="fleet")


def _exit_fast(run: Callable[[], None]) -> NoReturn:
    """Run an entry point, then leave without the interpreter's teardown (~0.6 s of freeing
    the SDK's 3,000 modules), once what must be durable is out: the runner has closed the
    journal and written the report before it returns; here the atexit hooks run (logging
    and OpenTelemetry flush there) and stdout/stderr are flushed. An uncaught exception, or
    a thread that is not a daemon still running, takes the ordinary way out instead."""
    try:
        run()
        code: int = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): printed, exit 1, as Python does
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):  # a closed pipe loses nothing that could still be written
            stream.flush()
    os._exit(code)


def loop_main() -> None:
    """Entry point of `ralph-loop`: the run command on its own."""
    single = typer.Typer(
        add_completion=False, no_args_is_help=True, rich_markup_mode=None, context_settings=CONTEXT
    )
    single.command(help=RUN_HELP, epilog=EXIT_CODES_HELP)(run_command)
    _exit_fast(lambda: run_app(single, "ralph-loop"))


def main() -> None:
    """Entry point of `ralph`: the command group."""
    _add_fleet()  # not for `ralph-loop`, which has no sub-commands
    _exit_fast(lambda: run_app(app, "ralph"))

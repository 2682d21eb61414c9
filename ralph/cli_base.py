"""What the command line's modules share: the one-line error and its exit code, notes on
stderr, the help of the common arguments, and the Typer options generated from the settings
table (settings.py), which `ralph run` and `ralph harden` take.

cli.py (the app and `ralph run`), launch.py and commands.py (the other sub-commands) build
on it and it imports none of them, so the command line's import graph has no cycle.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from . import parse
from .errors import ExitCode
from .redact import redact
from .settings import Setting
from .views import logs

REPO_HELP = "The repository (default: RALPH_REPO or the current directory)."
RUN_ARG_HELP = "Run id, a unique part of one, or `latest`, from `ralph runs`."


def _prog() -> str:
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "ralph"


def fail(message: str, code: int = ExitCode.USAGE) -> typer.Exit:
    """Print a one-line error on stderr (JSON in JSON log mode) and exit."""
    if logs.json_active():
        logs.error_line(message, int(code))
    else:
        sys.stderr.write(f"{_prog()}: error: {redact(message)}\n")
    return typer.Exit(code)


def note(message: str, json_logs: bool) -> None:
    """Print a one-line note on stderr (a JSON record in JSON log mode)."""
    if json_logs or logs.json_active():
        logs.write_line(logs.record("note", level="info", message=message), sys.stderr)
    else:
        sys.stderr.write(f"{_prog()}: note: {message}\n")


def exit_with(result_code: int) -> None:
    raise typer.Exit(int(result_code))


# --- options generated from the settings table ---------------------------------------------

REPO_OPTION = inspect.Parameter(
    "repo",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Path | None,
        typer.Option(
            help="The git repository to work on (default: RALPH_REPO or the current directory).",
            show_default=False,
        ),
    ],
)
# Options that are not settings, by the setting each follows in --help (run and harden).
FOLLOWING = {"model": [REPO_OPTION]}
# The type the option takes on the command line, by the setting's parser (default str:
# durations and choices are parsed from the text, with errors that name the option).
_OPTION_TYPES: dict[Any, Any] = {
    parse.whole: int,
    parse.number: float,
    parse.path: Path,
    parse.text_list: list[str],
    parse.commands: list[str],
    parse.shell_args: list[str],  # --agent-arg: repeatable, one argument each
    parse.notify_targets: list[str],  # --notify: repeatable
}


def _one_way(s: Setting) -> bool:
    """A switch with no --no- form (--dry-run): its False means "not given"."""
    return s.switch and "/" not in (s.flag or "")


def given(settings: Iterable[Setting], options: dict[str, Any]) -> dict[str, Any]:
    """The settings given on the command line: None means "not given" (an explicit --no-X
    is False and overrides a true from ralph.yaml or the environment)."""
    return {
        s.name: options[s.name]
        for s in settings
        if (value := options[s.name]) is not None
        and value != []
        and not (_one_way(s) and value is False)
    }


def option(s: Setting) -> inspect.Parameter:
    """The typer parameter of a setting: None when not given, so lower layers stay."""
    assert s.flag is not None
    decls = [s.flag, *([s.short] if s.short else [])]
    opt = typer.Option(*decls, help=s.help, show_default=False)
    kind: Any = bool if s.switch else _OPTION_TYPES.get(s.parse, str)
    default = False if _one_way(s) else None
    annotated: Any = Annotated  # built at run time from the declaration: no static type
    annotation = annotated[kind if _one_way(s) else kind | None, opt]
    return inspect.Parameter(
        s.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def setting_options(settings: Iterable[Setting]) -> list[inspect.Parameter]:
    """The options of `settings`, in their order, each followed by its FOLLOWING ones."""
    params = []
    for s in settings:
        params += [option(s), *FOLLOWING.get(s.name, [])]
    return params


def with_parameters(command: Callable[..., None], params: list[inspect.Parameter]) -> None:
    """Give `command` (taking **options) the signature typer reads its options from."""
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}

"""The command line: parse, build a RunConfig, call the runner, map the result to an exit code."""

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

from . import config, layers, parse
from .config import RunConfig, repo_dir
from .errors import EXIT_CODES_HELP, ExitCode, RalphError, UsageError
from .settings import OPTIONS, Setting

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


def _fail(message: str, code: int = ExitCode.USAGE) -> typer.Exit:
    """Print a one-line error on stderr (JSON in JSON log mode) and exit."""
    from . import logs

    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "ralph"
    if logs.json_active():
        logs.error_line(message, int(code))
    else:
        from .redact import redact

        sys.stderr.write(f"{prog}: error: {redact(message)}\n")
    return typer.Exit(code)


def _note(message: str, json_logs: bool) -> None:
    """Print a one-line note on stderr (a JSON record in JSON log mode)."""
    from . import logs

    if json_logs or logs.json_active():
        logs.write_line(logs.record("note", level="info", message=message), sys.stderr)
    else:
        prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "ralph"
        sys.stderr.write(f"{prog}: note: {message}\n")


REPO_HELP = "The repository (default: RALPH_REPO or the current directory)."


def build_config(prompt: str, flags: dict[str, Any], repo: Path | None) -> RunConfig:
    """config.build_config, with its note about the prompt printed on stderr."""
    return config.build_config(
        prompt, flags, repo, note=lambda text, cfg: _note(text, cfg.log_format == "json")
    )


def _exit_with(result_code: int) -> None:
    raise typer.Exit(int(result_code))


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
_REPO = inspect.Parameter(
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
# Options that are not settings, and the setting each follows in --help ("" = at the end).
_EXTRA_OPTIONS = {"model": [_REPO], "": [_RESUME]}
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


def _given(s: Setting, value: Any) -> bool:
    return value is not None and value != [] and not (_one_way(s) and value is False)


def _option(s: Setting) -> inspect.Parameter:
    """The typer parameter of a setting: None when not given, so lower layers stay."""
    assert s.flag is not None
    decls = [s.flag, *([s.short] if s.short else [])]
    option = typer.Option(*decls, help=s.help, show_default=False)
    kind: Any = bool if s.switch else _OPTION_TYPES.get(s.parse, str)
    default = False if _one_way(s) else None
    annotated: Any = Annotated  # built at run time from the declaration: no static type
    annotation = annotated[kind if _one_way(s) else kind | None, option]
    return inspect.Parameter(
        s.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _run_parameters() -> list[inspect.Parameter]:
    params = [_PROMPT]
    for s in OPTIONS:
        params += [_option(s), *_EXTRA_OPTIONS.get(s.name, [])]
    return params + _EXTRA_OPTIONS[""]


def run_command(**options: Any) -> None:
    prompt, repo, resume = options.pop("prompt"), options.pop("repo"), options.pop("resume")
    if prompt is None and not resume:
        raise _fail("missing PROMPT: give a prompt file, - for stdin, a built-in name or text")
    # Only options given on the command line override: None means "not given" (an
    # explicit --no-X is False and overrides a true from ralph.yaml or the environment).
    given = {s.name: options[s.name] for s in OPTIONS if _given(s, options[s.name])}
    if resume:
        from .guards import BUDGETS
        from .resume import DISPLAY

        display = {k: given.pop(k) for k in DISPLAY if k in given}  # how it is shown: yours
        budgets = {k: given.pop(k) for k in BUDGETS if k in given}  # the operator may raise
        _refuse_resume_overrides(prompt, given)
        resume_run(resume, repo, display=display, budgets=budgets)
        return
    try:
        cfg = build_config(prompt, layers.parse_layer(given, layers.COMMAND_LINE), repo)
        if cfg.dry_run:
            from .runner import dry_run as print_dry_run

            print_dry_run(cfg)
            return
        _exit_with(_execute(cfg))
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


_PARAMETERS = _run_parameters()
# typer reads the options from the signature: give it the generated one.
run_command.__signature__ = inspect.Signature(_PARAMETERS)  # type: ignore[attr-defined]
run_command.__annotations__ = {p.name: p.annotation for p in _PARAMETERS} | {"return": None}


def _refuse_resume_overrides(prompt: str | None, given: dict[str, Any]) -> None:
    """A resumed run keeps the prompt and settings it started with (its budgets are counted
    from the start), so anything else on the command line is refused, not silently ignored."""
    from .layers import option_name

    if prompt is not None:
        raise _fail(
            "--resume RUN takes no PROMPT: the run continues with its own; drop the PROMPT, "
            "or drop --resume to start a new run"
        )
    if given:
        names = ", ".join(option_name(name) for name in given)
        raise _fail(
            f"--resume RUN continues the run with the settings it started with; {names} "
            "cannot be changed on resume (start a new run to use other settings)"
        )


def _execute(cfg: Any, resume: Any = None) -> int:
    from .runner import execute
    from .ui import make_observers

    if cfg.log_format == "json":
        from .logs import install_json_stderr

        install_json_stderr()  # warnings, library logs and tracebacks as JSON lines too
    from .signals import STOP

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
        from .logs import settings_log_format
        from .resume import display_settings, resume_config

        shown = display_settings(display or {})
        settings_log_format(shown.get("log_format"))  # errors from here on follow it
        root = repo_dir(repo).resolve()
        from .campaign import campaign_of

        if campaign_of(root, run) is not None:  # a campaign, or one of its phases' runs
            if more is not None or any(v is not None for v in (budgets or {}).values()):
                raise UsageError(
                    "--more and new budgets do not apply to a campaign: `ralph resume "
                    "CAMPAIGN` continues the phase where it stopped with the campaign's "
                    "budgets (start a new campaign for more)"
                )
            _exit_with(_run_campaign(None, (root, run, shown)))
        cfg, point = resume_config(root, run, more, shown, budgets)
        _exit_with(_execute(cfg, point))
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


app.command("run", help=RUN_HELP, epilog=EXIT_CODES_HELP)(run_command)

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


def _harden_parameters() -> list[inspect.Parameter]:
    from .settings import HARDEN_OPTIONS

    params = [_option(s) for s in HARDEN_OPTIONS]
    for s in OPTIONS:
        if s.name not in _NOT_FOR_HARDEN:
            params += [_option(s), *_EXTRA_OPTIONS.get(s.name, [])]
    return params


def harden_command(**options: Any) -> None:
    from .settings import HARDEN_OPTIONS

    repo = options.pop("repo")
    settings = [*HARDEN_OPTIONS, *(s for s in OPTIONS if s.name not in _NOT_FOR_HARDEN)]
    given = {s.name: options[s.name] for s in settings if _given(s, options[s.name])}
    try:
        from .campaign import campaign_config

        cfg = campaign_config(
            layers.parse_layer(given, layers.COMMAND_LINE),
            repo,
            note=lambda text, c: _note(text, c.log_format == "json"),
        )
        _exit_with(_run_campaign(cfg))
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


_HARDEN_PARAMETERS = _harden_parameters()
harden_command.__signature__ = inspect.Signature(_HARDEN_PARAMETERS)  # type: ignore[attr-defined]
harden_command.__annotations__ = {p.name: p.annotation for p in _HARDEN_PARAMETERS} | {
    "return": None
}


def _campaign_echo(line: str) -> None:
    from .text import clean

    sys.stderr.write(clean(line) + "\n")
    sys.stderr.flush()


def _run_campaign(cfg: Any, resume: tuple[Path, str, dict[str, Any]] | None = None) -> int:
    from .campaign import resume_campaign, run_campaign
    from .signals import STOP
    from .ui import make_observers

    if cfg is not None and cfg.log_format == "json":
        from .logs import install_json_stderr

        install_json_stderr()
    STOP.settle_until_exit = True
    shown = (
        cfg.output_format if cfg is not None else (resume or (None, "", {}))[2].get("output_format")
    )
    from contextlib import nullcontext, redirect_stdout

    # --output-format json: stdout holds the campaign's result alone; the phases' own
    # summaries go to stderr with the rest of what is shown.
    quiet_stdout = redirect_stdout(sys.stderr) if shown == "json" else nullcontext()
    with quiet_stdout:
        if resume is not None:
            start, ref, display = resume
            result = resume_campaign(start, ref, make_observers, _campaign_echo, display)
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
    for line in lines:
        _campaign_echo(line)
    if shown == "json":
        import json

        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
    return int(result.exit_code)


def _resumable(status: str) -> bool:
    from .status import RunStatus

    return RunStatus(status).resumable


app.command("harden", help=HARDEN_HELP, epilog=EXIT_CODES_HELP)(harden_command)


_BUDGET_HELP = {
    name: f"A new budget for the whole run (it counts what was spent): {what}"
    for name, what in (
        ("max_cost", "stop when it has cost this many USD."),
        ("max_tokens", "stop after this many billed tokens."),
        ("timeout", "stop after this much wall time (90s, 45m, 8h)."),
    )
}


@app.command("resume", epilog=EXIT_CODES_HELP)
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
            "--max-iterations, a budget or the stall guard (one that completed is done).",
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
    """Resume an interrupted, crashed or killed run where it stopped, or continue one."""
    display = {
        "log_format": log_format, "quiet": quiet, "verbose": verbose,
        "output_format": output_format,
    }  # fmt: skip
    budgets = {"max_cost": max_cost, "max_tokens": max_tokens, "timeout": timeout}
    resume_run(run, repo, more, display, budgets)


@app.command("runs")
def runs_cmd(
    repo: Annotated[
        Path | None,
        typer.Option(help=REPO_HELP, show_default=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of runs, each with an id.")
    ] = False,
) -> None:
    """List the runs recorded in this repository's journal (.ralph/ralph.db)."""
    from .store.history import runs_command

    try:
        runs_command(repo_dir(repo).resolve(), as_json, sys.stdout)
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


RUN_ARG_HELP = "Run id, a unique part of one, or `latest`, from `ralph runs`."


@app.command("show")
def show_cmd(
    run: Annotated[
        str, typer.Argument(help=RUN_ARG_HELP + " Default: the latest run.", show_default=False)
    ] = "latest",
    repo: Annotated[
        Path | None,
        typer.Option(help=REPO_HELP, show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    report: Annotated[bool, typer.Option("--report", help="Print the run's report.md.")] = False,
    iteration: Annotated[
        int | None,
        typer.Option(
            "--iteration",
            help="Print what the model saw and said in iteration N (the whole conversation).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show one run: its iterations and totals, its report, or one iteration's conversation."""
    import io

    from .store.history import show_command
    from .text import clean

    root = repo_dir(repo).resolve()
    try:
        from .campaign import CAMPAIGN_PREFIX

        if run.startswith(CAMPAIGN_PREFIX):  # a campaign (`ralph harden`): its report
            from .hardening import campaign_report

            sys.stdout.write(clean(campaign_report(root, run)))
            return
        if report:
            from .config import find_main_repo
            from .report_md import load_report

            main_repo = find_main_repo(root)
            if main_repo is None:
                raise UsageError(f"{root} is not inside a git repository; pass --repo DIR")
            sys.stdout.write(clean(load_report(main_repo, run)))
            return
        # The agent's words (summaries, reasons) are shown without their escape codes.
        shown = io.StringIO()
        if iteration is not None:
            from .store.history import conversation_command

            conversation_command(root, run, iteration, as_json, shown)
        else:
            show_command(root, run, as_json, shown)
        sys.stdout.write(clean(shown.getvalue()))
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


@app.command("clean")
def clean_cmd(
    repo: Annotated[
        Path | None,
        typer.Option(help=REPO_HELP, show_default=False),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also delete branches with commits on no other branch or remote."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
) -> None:
    """Remove the worktrees and branches that finished runs left (never unpushed work
    unless --force); running and resumable runs are left alone."""
    from .cleanup import clean
    from .config import find_main_repo
    from .store.journal import Journal
    from .store.schema import db_path

    try:
        main = find_main_repo(repo_dir(repo).resolve())
        if main is None:
            raise UsageError(f"{repo_dir(repo)} is not inside a git repository; pass --repo DIR")
        if not db_path(main).exists():
            typer.echo("no runs recorded here: nothing to clean")
            return
        journal = Journal.open(main, create=False)
        try:
            runs = journal.list_runs()
        finally:
            journal.close()
        found = clean(main, runs, force, dry_run)
        verb = "would remove" if dry_run else "removed"
        for item in found:
            if item.removed:
                typer.echo(f"{verb} {item.what} (run {item.run_id})")
            else:
                typer.echo(f"kept {item.what} (run {item.run_id}): {item.why}")
        if not found:
            typer.echo("nothing to clean")
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


@app.command("prompts")
def prompts_cmd() -> None:
    """List the built-in prompts."""
    from .prompt import builtin_names, builtin_path, split_front_matter

    for name in builtin_names():
        path = builtin_path(name)
        assert path is not None
        settings, _ = split_front_matter(path.read_text(encoding="utf-8"), str(path))
        token = settings.get("completion_promise", "")
        typer.echo(f"{name:<20} {token:<26} {settings.get('description', '')}")


@app.command("init")
def init_cmd(
    repo: Annotated[
        Path | None,
        typer.Option(help=REPO_HELP, show_default=False),
    ] = None,
    prompts: Annotated[
        bool,
        typer.Option("--prompts", help="Also copy the built-in prompts into prompts/ for editing."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
    commit: Annotated[
        bool,
        typer.Option(
            "--commit/--no-commit",
            help="Commit the files written (only them), so the next run starts on a clean tree.",
        ),
    ] = True,
) -> None:
    """Write a commented ralph.yaml (every setting, its default, what it does) and commit it."""
    from .config import find_main_repo
    from .init import commit_files, init_repo

    root = repo_dir(repo)
    try:
        if not root.is_dir():
            raise UsageError(f"--repo {root} does not exist or is not a directory")
        root = root.resolve()
        written = init_repo(root, prompts, force)
        for path in written:
            typer.echo(f"wrote {path}")
        in_git = find_main_repo(root) is not None
        if commit and in_git:
            sha = commit_files(root, written)
            if sha:
                typer.echo(f"committed them on the current branch ({sha})")
        elif commit:
            typer.echo("not a git repository: `git init` and commit these files before a run")
        prompt = (
            "prompts/security.md" if (root / "prompts" / "security.md").is_file() else "security"
        )
        where = "" if find_main_repo(Path.cwd()) == find_main_repo(root) else f" --repo {root}"
        typer.echo(
            "next: export ANTHROPIC_API_KEY=... and run\n"
            f"  ralph-loop {prompt} --max-iterations 3{where}\n"
            "  (edit ralph.yaml to change the defaults; `ralph demo` shows a run offline)"
        )
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


@app.command("demo", epilog=EXIT_CODES_HELP)
def demo_cmd(
    dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where to create the demo repository (default: a new temporary directory).",
            show_default=False,
        ),
    ] = None,
    sandbox: Annotated[str, typer.Option(help="auto | bwrap | none.")] = "auto",
    harden: Annotated[
        bool,
        typer.Option(
            "--harden",
            help="Run the whole hardening campaign (`ralph harden`): the audits, then the "
            "remediation run fixing the tasks the security audit filed.",
        ),
    ] = False,
    pace: Annotated[
        bool | None,
        typer.Option(
            "--pace/--no-pace",
            help="Give each recorded model turn 1.2 s, so the live view can be watched "
            "(default: on in a terminal, off when stderr is not one).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Offline demo: a recorded session hardens a small vulnerable app through the real loop."""
    from .demo_run import run_demo, run_harden_demo

    try:
        if harden:
            code = run_harden_demo(dir, sandbox, typer.echo)
        else:
            code = run_demo(dir, sandbox, typer.echo, pace)
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None
    _exit_with(code)


@app.command("steer")
def steer_cmd(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or latest.")],
    text: Annotated[
        str | None,
        typer.Argument(
            help="Guidance for the run's next iteration (- reads it from stdin); none lists "
            "the guidance still to be given.",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Give it to every coming iteration, not just the next.")
    ] = False,
    withdraw: Annotated[
        str | None,
        typer.Option(help="Withdraw guidance: its id, or all.", show_default=False),
    ] = None,
    repo: Annotated[Path | None, typer.Option(help=REPO_HELP, show_default=False)] = None,
) -> None:
    """Guide a running (or resumable) run: the next iteration's message carries the text."""
    from .operate import steer_command

    try:
        steer_command(repo_dir(repo).resolve(), run, text, keep=keep, withdraw=withdraw)
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


@app.command("stop")
def stop_cmd(
    run: Annotated[str | None, typer.Argument(help=RUN_ARG_HELP, show_default=False)] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Stop at once, as Ctrl-C does (still resumable).")
    ] = False,
    repo: Annotated[Path | None, typer.Option(help=REPO_HELP, show_default=False)] = None,
) -> None:
    """Ask a running run to finish its iteration, commit and end as stopped (exit 130)."""
    from .operate import stop_command

    try:
        stop_command(repo_dir(repo).resolve(), run, now)
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


@app.command("watch", epilog=EXIT_CODES_HELP)
def watch_cmd(
    run: Annotated[str | None, typer.Argument(help=RUN_ARG_HELP, show_default=False)] = None,
    log_format: Annotated[
        str, typer.Option(help="auto | plain | json | rich, as for a run.")
    ] = "auto",
    repo: Annotated[Path | None, typer.Option(help=REPO_HELP, show_default=False)] = None,
) -> None:
    """Follow a run from another terminal (read-only); exits with the run's exit code."""
    from .operate import watch_command

    try:
        code = watch_command(repo_dir(repo).resolve(), run, log_format)
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None
    _exit_with(code)


def _add_fleet() -> None:
    """`ralph fleet ...` (Temporal): its Typer group is light; the SDK loads when one runs."""
    from .fleet.cli import fleet_app

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
    from .logs import run_app

    _exit_fast(lambda: run_app(single, "ralph-loop"))


def main() -> None:
    """Entry point of `ralph`: the command group."""
    from .logs import run_app

    _add_fleet()  # not for `ralph-loop`, which has no sub-commands
    _exit_fast(lambda: run_app(app, "ralph"))

"""The command line: parse, build a RunConfig, call the runner, map the result to an exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import DEFAULT_MODEL
from .errors import EXIT_CODES_HELP, ExitCode, RalphError, UsageError

RUN_HELP = (
    "Run PROMPT against a git repository in a Ralph loop until the agent's final message "
    "carries <promise>TOKEN</promise> (checked by the completion gate), --max-iterations is "
    "reached, or a guard stops it. PROMPT is a prompt file, - for stdin, a built-in name "
    "(security, observability, incident-response, reliability) or the prompt text itself. "
    "Settings also come from ralph.yaml, the prompt's front matter and RALPH_<SETTING> "
    "variables (e.g. RALPH_MAX_COST=20); an option given here wins."
)

app = typer.Typer(
    name="ralph",
    help="ralph-loop: hardening prompts run against a git repository in a Ralph loop.",
    no_args_is_help=True,
    add_completion=False,
    epilog=EXIT_CODES_HELP,
    rich_markup_mode=None,
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


def repo_dir(repo: Path | None) -> Path:
    """The repository a command works on: --repo, else RALPH_REPO, else the current directory
    (every command alike, so the `ralph resume RUN` a run prints works in the same shell)."""
    return (repo or Path(os.environ.get("RALPH_REPO") or Path.cwd())).expanduser()


def build_config(prompt: str, flags: dict[str, Any], repo: Path | None) -> Any:
    """Merge defaults < ralph.yaml < front matter < RALPH_* env < flags into a RunConfig.

    Repository files (ralph.yaml, front matter) may only tighten security (see
    config.check_repo_layer); the environment and flags may do anything."""
    from .config import (
        CONFIG_FILE,
        RunConfig,
        check_repo_layer,
        env_layer,
        file_layer,
        merge_layers,
        merge_repo_layers,
        validate,
    )
    from .prompt import load_prompt

    root = repo_dir(repo)
    if not root.is_dir():
        named = f"--repo {root}" if repo is not None else f"RALPH_REPO={root}"
        raise UsageError(f"{named} does not exist or is not a directory")
    root = root.resolve()
    spec = load_prompt(prompt)
    from_file = file_layer(root)
    from_env = env_layer()
    given = {k: v for k, v in flags.items() if v is not None and v != []}
    overridden = set(from_env) | set(given)
    check_repo_layer(from_file, str(root / CONFIG_FILE), overridden)
    # Prompt files usually live in the repository too, where the agent can edit them.
    check_repo_layer(spec.settings, f"{spec.path or spec.source} front matter", overridden)
    merged = merge_layers(merge_repo_layers(from_file, spec.settings), from_env, given)
    from .logs import settings_log_format

    settings_log_format(merged.get("log_format"))  # usage errors from here on follow it
    cfg = RunConfig(
        **merged,
        repo=root,
        prompt=spec.text,
        prompt_name=spec.name,
        prompt_source=spec.source,
    )
    if not cfg.completion_promise:
        found = spec.promises
        if len(found) > 1:
            raise UsageError(
                f"the prompt asks for several promises ({', '.join(found)}); choose one with "
                "--completion-promise TOKEN"
            )
        if not found:
            raise UsageError(
                "no completion promise: add --completion-promise TOKEN, or put "
                "<promise>TOKEN</promise> in the prompt"
            )
        cfg.completion_promise = found[0]
    validate(cfg)
    if spec.note:
        _note(spec.note, cfg.log_format == "json")
    return cfg


def _exit_with(result_code: int) -> None:
    raise typer.Exit(int(result_code))


def run_command(
    prompt: Annotated[
        str | None,
        typer.Argument(help="Prompt file, -, built-in name or text.", show_default=False),
    ] = None,
    max_iterations: Annotated[
        int | None,
        typer.Option(
            help="Iterations at most (default 10); 0 = no limit, only with --max-cost or --timeout.",
            show_default=False,
        ),
    ] = None,
    completion_promise: Annotated[
        str | None,
        typer.Option(
            help="The token the agent outputs as <promise>TOKEN</promise> when done (default: the one the prompt names).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"Model: an Anthropic model id (default {DEFAULT_MODEL}), or script:PATH "
            "to replay a recorded session offline.",
            show_default=False,
        ),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option(
            help="The git repository to work on (default: RALPH_REPO or the current directory).",
            show_default=False,
        ),
    ] = None,
    max_turns: Annotated[
        int | None,
        typer.Option(help="Model calls within one iteration (default 50).", show_default=False),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the resolved config and the first request, then exit 0."
        ),
    ] = False,
    retry_window: Annotated[
        str | None,
        typer.Option(
            help="How long to keep retrying rate limits and overloads (default 15m).",
            show_default=False,
        ),
    ] = None,
    bash_timeout: Annotated[
        str | None,
        typer.Option(
            help="Timeout of each bash command the agent runs (default 120s).", show_default=False
        ),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(
            help="Branch to create for the run (default ralph/<prompt>-<UTC time>).",
            show_default=False,
        ),
    ] = None,
    in_place: Annotated[
        bool | None,
        typer.Option(
            "--in-place/--no-in-place", help="Work on the current branch.", show_default=False
        ),
    ] = None,
    worktree: Annotated[
        bool | None,
        typer.Option(
            "--worktree/--no-worktree",
            help="Work in a git worktree under .ralph/worktrees; your checkout is never touched.",
            show_default=False,
        ),
    ] = None,
    allow_dirty: Annotated[
        bool | None,
        typer.Option(
            "--allow-dirty/--no-allow-dirty",
            help="Run on a dirty tree; only paths ralph changed are committed.",
            show_default=False,
        ),
    ] = None,
    no_commit: Annotated[
        bool | None,
        typer.Option("--no-commit/--commit", help="Leave changes uncommitted.", show_default=False),
    ] = None,
    sandbox: Annotated[
        str | None,
        typer.Option(
            help="auto | bwrap | none (default auto: bubblewrap when it works).", show_default=False
        ),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option(
            help="on | off: network inside the sandbox (default on, audits need pip-audit/npm audit).",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", help="Pass a RALPH_* variable to the agent (repeatable).", show_default=False
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(help="Stop when the run has cost this many USD (exit 4).", show_default=False),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(help="Stop after this many billed tokens (exit 4).", show_default=False),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Stop after this much wall time: 90, 90s, 45m, 8h, 1h30m (exit 4).",
            show_default=False,
        ),
    ] = None,
    stall_limit: Annotated[
        int | None,
        typer.Option(
            help="Stop after K iterations in a row without progress (default 5; 0 = off; exit 5).",
            show_default=False,
        ),
    ] = None,
    max_failures: Annotated[
        int | None,
        typer.Option(
            help="Stop after K failed iterations in a row (default 3; exit 5).", show_default=False
        ),
    ] = None,
    verify: Annotated[
        list[str] | None,
        typer.Option(
            "--verify",
            help="Command that must exit 0 before a promise is accepted (repeatable).",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="auto | plain | json | rich (default auto: live view on a terminal, plain lines otherwise).",
            show_default=False,
        ),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(help="Also write JSON log lines to this file.", show_default=False),
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
    show_text: Annotated[
        bool | None,
        typer.Option(
            "--show-text/--no-show-text",
            help="Show the agent's text in full.",
            show_default=False,
        ),
    ] = None,
    otel: Annotated[
        bool | None,
        typer.Option(
            "--otel/--no-otel",
            help="Export OpenTelemetry traces (needs the otel extra).",
            show_default=False,
        ),
    ] = None,
    pr: Annotated[
        bool | None,
        typer.Option(
            "--pr/--no-pr",
            help="Push the run branch and open or update a pull request.",
            show_default=False,
        ),
    ] = None,
    pr_draft: Annotated[
        bool | None,
        typer.Option(
            "--pr-draft/--no-pr-draft",
            help="Pull request always a draft, or never (default: by outcome: a draft "
            "unless the run completed).",
            show_default=False,
        ),
    ] = None,
    pr_base: Annotated[
        str | None,
        typer.Option(
            help="Base branch of the pull request (default: the repository's default).",
            show_default=False,
        ),
    ] = None,
    pr_label: Annotated[
        list[str] | None,
        typer.Option(
            "--pr-label", help="Label for the pull request (repeatable).", show_default=False
        ),
    ] = None,
    remote: Annotated[
        str | None, typer.Option(help="Git remote to push to (default origin).", show_default=False)
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            help="builtin | claude-code | codex: the agent of each iteration (default builtin).",
            show_default=False,
        ),
    ] = None,
    agent_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--agent-arg",
            help="An argument passed to the agent CLI (repeatable).",
            show_default=False,
        ),
    ] = None,
    fallback_agent: Annotated[
        str | None,
        typer.Option(
            help="Agent that runs an iteration when the agent hits its usage limit.",
            show_default=False,
        ),
    ] = None,
    usage_limit_wait: Annotated[
        str | None,
        typer.Option(
            help="Longest wait for an agent's usage limit to reset (default 6h; then exit 1).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Resume run RUN with its recorded settings instead of starting one.",
            show_default=False,
        ),
    ] = None,
) -> None:
    if prompt is None and not resume:
        raise _fail("missing PROMPT: give a prompt file, - for stdin, a built-in name or text")
    flags: dict[str, Any] = {
        "max_iterations": max_iterations,
        "completion_promise": completion_promise,
        "model": model,
        "max_turns": max_turns,
        "dry_run": dry_run,
        "retry_window": retry_window,
        "bash_timeout": bash_timeout,
        "branch": branch,
        "in_place": in_place,
        "worktree": worktree,
        "allow_dirty": allow_dirty,
        "no_commit": no_commit,
        "sandbox": sandbox,
        "network": network,
        "env": env,
        "max_cost": max_cost,
        "max_tokens": max_tokens,
        "timeout": timeout,
        "stall_limit": stall_limit,
        "max_failures": max_failures,
        "verify": verify,
        "log_format": log_format,
        "log_file": log_file,
        "quiet": quiet,
        "verbose": verbose,
        "show_text": show_text,
        "otel": otel,
        "pr": pr,
        "pr_draft": pr_draft,
        "pr_base": pr_base,
        "pr_labels": pr_label,
        "remote": remote,
        "agent": agent,
        "agent_args": agent_arg,
        "fallback_agent": fallback_agent,
        "usage_limit_wait": usage_limit_wait,
    }
    # Only options given on the command line override: None means "not given" (an
    # explicit --no-X is False and overrides a true from ralph.yaml or the environment).
    given = {k: v for k, v in flags.items() if v is not None and v != []}
    if not dry_run:
        given.pop("dry_run")  # RALPH_DRY_RUN=1 may still ask for one
    if resume:
        _refuse_resume_overrides(prompt, given)
        resume_run(resume, repo)
        return
    assert prompt is not None
    try:
        from .config import COMMAND_LINE, parse_layer

        log_path = given.pop("log_file", None)
        parsed = parse_layer(given, COMMAND_LINE)
        if log_path is not None:
            parsed["log_file"] = log_path
        cfg = build_config(prompt, parsed, repo)
        if cfg.dry_run:
            from .runner import dry_run as print_dry_run

            print_dry_run(cfg)
            return
        _exit_with(_execute(cfg))
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


def _refuse_resume_overrides(prompt: str | None, given: dict[str, Any]) -> None:
    """A resumed run keeps the prompt and settings it started with (its budgets are counted
    from the start), so anything else on the command line is refused, not silently ignored."""
    from .config import option_name

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
    result = execute(cfg, make_observers(cfg), resume)
    return int(result.exit_code)


def resume_run(run: str, repo: Path | None) -> None:
    """Continue an interrupted, crashed or killed run."""
    try:
        from .resume import resume_config

        root = repo_dir(repo).resolve()
        cfg, point = resume_config(root, run)
        _exit_with(_execute(cfg, point))
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None


app.command("run", help=RUN_HELP, epilog=EXIT_CODES_HELP)(run_command)


@app.command("resume", epilog=EXIT_CODES_HELP)
def resume_cmd(
    run: Annotated[str, typer.Argument(help=RUN_ARG_HELP)],
    repo: Annotated[
        Path | None,
        typer.Option(help=REPO_HELP, show_default=False),
    ] = None,
) -> None:
    """Resume an interrupted, crashed or killed run where it stopped."""
    resume_run(run, repo)


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
    from .history import runs_command

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
) -> None:
    """Show one run: its iterations and totals, or its report."""
    import io

    from .history import show_command
    from .ui import clean

    root = repo_dir(repo).resolve()
    try:
        if report:
            from .report import load_report
            from .workspace import find_main_repo

            main_repo = find_main_repo(root)
            if main_repo is None:
                raise UsageError(f"{root} is not inside a git repository; pass --repo DIR")
            sys.stdout.write(clean(load_report(main_repo, run)))
            return
        # The agent's words (summaries, reasons) are shown without their escape codes.
        shown = io.StringIO()
        show_command(root, run, as_json, shown)
        sys.stdout.write(clean(shown.getvalue()))
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
) -> None:
    """Write a commented ralph.yaml (every setting, its default, what it does)."""
    from .init import init_repo

    root = repo_dir(repo)
    try:
        if not root.is_dir():
            raise UsageError(f"--repo {root} does not exist or is not a directory")
        for path in init_repo(root.resolve(), prompts, force):
            typer.echo(f"wrote {path}")
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
) -> None:
    """Offline demo: a recorded session hardens a small vulnerable app through the real loop."""
    from .demo_run import run_demo

    try:
        code = run_demo(dir, sandbox, typer.echo)
    except RalphError as exc:
        raise _fail(exc.message, exc.exit_code) from None
    _exit_with(code)


RUN_ARG_HELP = "Run id, a unique prefix of one, or latest (the default)."


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


def loop_main() -> None:
    """Entry point of `ralph-loop`: the run command on its own."""
    single = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None)
    single.command(help=RUN_HELP, epilog=EXIT_CODES_HELP)(run_command)
    from .logs import run_app

    run_app(single, "ralph-loop")


def main() -> None:
    """Entry point of `ralph`: the command group."""
    from .logs import run_app

    run_app(app, "ralph")

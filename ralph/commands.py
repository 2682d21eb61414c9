"""The sub-commands of `ralph` that look at or act on recorded runs and the repository:
runs, show, clean, prompts, init, demo, steer, stop and watch (cli.py registers them; runs
are started in cli.py and launch.py).

Each imports the machinery it drives (the journal, the live view, git) when it runs, so
`ralph --help` and `ralph-loop`'s start-up load none of it (benchmarks/bench_start.py).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_base import (
    REPO_HELP,
    RUN_ARG_HELP,
    exit_with,
    fail,
)
from .config import find_main_repo, repo_dir, require_main_repo
from .errors import RalphError, UsageError
from .text import clean


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
    from .store.history import runs_command  # sqlite3 and the journal: for this command

    try:
        runs_command(repo_dir(repo).resolve(), as_json, sys.stdout)
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


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
    from .store.history import show_command  # sqlite3 and the journal: for this command

    root = repo_dir(repo).resolve()
    try:
        from .run.campaign import CAMPAIGN_PREFIX  # the campaign's machinery (git, models)

        if run.startswith(CAMPAIGN_PREFIX):  # a campaign (`ralph harden`): its report
            from .run.hardening import campaign_report  # a campaign's report: only for one

            sys.stdout.write(clean(campaign_report(root, run)))
            return
        if report:
            from .views.report_md import load_report  # the renderer: only for --report

            main_repo = require_main_repo(root)
            sys.stdout.write(clean(load_report(main_repo, run)))
            return
        # The agent's words (summaries, reasons) are shown without their escape codes.
        shown = io.StringIO()
        if iteration is not None:
            from .store.history import conversation_command  # sqlite3 and the journal

            conversation_command(root, run, iteration, as_json, shown)
        else:
            show_command(root, run, as_json, shown)
        sys.stdout.write(clean(shown.getvalue()))
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


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
    # What this command alone needs: git, sqlite3 and the journal.
    from .git.cleanup import clean  # off the start-up path of the other commands
    from .store.journal import Journal  # (the same)
    from .store.schema import db_path  # (the same)

    try:
        main = require_main_repo(repo_dir(repo).resolve())
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
        raise fail(exc.message, exc.exit_code) from None


def prompts_cmd() -> None:
    """List the built-in prompts."""
    from .run.prompt import builtin_names, builtin_path, split_front_matter  # for this command

    for name in builtin_names():
        path = builtin_path(name)
        assert path is not None
        settings, _ = split_front_matter(path.read_text(encoding="utf-8"), str(path))
        token = settings.get("completion_promise", "")
        typer.echo(f"{name:<20} {token:<26} {settings.get('description', '')}")


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
    from .init import commit_files, init_repo  # the template and git: for this command

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
        raise fail(exc.message, exc.exit_code) from None


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
    from .demo_run import run_demo, run_harden_demo  # the demo and the runner: heavy

    try:
        if harden:
            code = run_harden_demo(dir, sandbox, typer.echo)
        else:
            code = run_demo(dir, sandbox, typer.echo, pace)
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None
    exit_with(code)


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
    from .operate import steer_command  # the journal and the live view: for this command

    try:
        steer_command(repo_dir(repo).resolve(), run, text, keep=keep, withdraw=withdraw)
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


def stop_cmd(
    run: Annotated[str | None, typer.Argument(help=RUN_ARG_HELP, show_default=False)] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Stop at once, as Ctrl-C does (still resumable).")
    ] = False,
    repo: Annotated[Path | None, typer.Option(help=REPO_HELP, show_default=False)] = None,
) -> None:
    """Ask a running run to finish its iteration, commit and end as stopped (exit 130)."""
    from .operate import stop_command  # the journal and the live view: for this command

    try:
        stop_command(repo_dir(repo).resolve(), run, now)
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None


def watch_cmd(
    run: Annotated[str | None, typer.Argument(help=RUN_ARG_HELP, show_default=False)] = None,
    log_format: Annotated[
        str, typer.Option(help="auto | plain | json | rich, as for a run.")
    ] = "auto",
    repo: Annotated[Path | None, typer.Option(help=REPO_HELP, show_default=False)] = None,
) -> None:
    """Follow a run from another terminal (read-only); exits with the run's exit code."""
    from .operate import watch_command  # the journal and the live view: for this command

    try:
        code = watch_command(repo_dir(repo).resolve(), run, log_format)
    except RalphError as exc:
        raise fail(exc.message, exc.exit_code) from None
    exit_with(code)

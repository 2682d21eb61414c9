"""Shared helpers for end-to-end tests: temporary git repositories and running the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

BIN = Path(sys.executable).parent
# Seconds after which a test gives up on a process or a condition: a bound that only ends a
# hang. A run that takes 3 s on a quiet machine has taken over 60 s with the machine loaded.
HANG = 300
# Seconds within which a stopped run must have exited, in tests: a bound a loaded machine keeps.
# The target on a quiet machine, 5 s (GitHub Actions sends SIGTERM 7.5 s after SIGINT, SIGKILL
# 2.5 s later), is checked by benchmarks/run.py (figure 8).
STOP_WITHIN = 30.0


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A real git repository with one commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    for name, text in (files or {"README.md": "# project\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def write_script(path: Path, iterations: list[Any], model: str | None = None) -> Path:
    """A scripted-model session file (see ralph/models/script.py)."""
    data: dict[str, Any] = {"iterations": [{"turns": turns} for turns in iterations]}
    if model:
        data["model"] = model
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without RALPH_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env.update(extra)
    return env


def ralph_loop_with_grace(grace: float = HANG) -> list[str]:
    """The command line of `ralph-loop` in a Python that first sets the seconds a stopped
    command gets between SIGTERM and SIGKILL (ralph.tools.bash.KILL_GRACE, 1 s) to `grace`.
    A test of what happens during that grace (a second signal) makes it long, so that it is
    the test's event, not the machine's load, that ends it."""
    code = (
        "import sys; import ralph.tools.bash as bash; "
        f"bash.KILL_GRACE = {float(grace)!r}; sys.argv[0] = {str(BIN / 'ralph-loop')!r}; "
        "from ralph.cli import loop_main; loop_main()"
    )
    return [sys.executable, "-c", code]


def run_cli(
    args: list[str],
    cwd: Path,
    *,
    command: str = "ralph-loop",
    env: dict[str, str] | None = None,
    timeout: float = HANG,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script in a subprocess, as a user would."""
    return subprocess.run(
        [str(BIN / command), *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


def run_here(
    args: list[str],
    cwd: Path,
    *,
    command: str = "ralph-loop",
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the console script's entry point in this process, as `run_cli` runs it in a new
    one: the same arguments, environment (os.environ replaced for the call), working
    directory and stdin; stdout and stderr captured; the exit code. The process-wide state a
    run sets (signal handlers, JSON logging, the stop flag) is put back afterwards.

    For behaviour that needs no process of its own: no signal, no exit at once, nothing that
    reads the runner's /proc entry. The anthropic SDK (about 1.7 s of CPU to import) is then
    imported once per test process, not once per run. A bug that raises comes out as the
    exception (a real process would print a traceback and exit 1)."""
    import io
    import logging
    import warnings
    from unittest import mock

    from ralph import cli
    from ralph.run.signals import STOP
    from ralph.views import logs

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_sys = (sys.argv, sys.stdin, sys.stdout, sys.stderr, sys.excepthook)
    saved_hooks = (threading.excepthook, warnings.showwarning)
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    saved_logs = (logs._installed, logs._settings_json, logs._current_run_id)
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    try:
        os.environ.clear()
        os.environ.update(env if env is not None else clean_env())
        os.chdir(cwd)
        sys.argv = [str(BIN / command), *args]
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin or ""), out, err
        entry = cli.loop_main if command == "ralph-loop" else cli.main
        with mock.patch.object(cli, "_exit_fast", lambda run: run()):
            try:
                entry()
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:  # sys.exit("message"): printed, exit 1, as Python does
                    err.write(f"{exc.code}\n")
                    code = 1
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr, sys.excepthook = saved_sys
        threading.excepthook, warnings.showwarning = saved_hooks
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        STOP.signum, STOP.settle_until_exit, STOP._depth = None, False, 0
        STOP._previous.clear()
        logs._installed, logs._settings_json, logs._current_run_id = saved_logs
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        logging.captureWarnings(False)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess([command, *args], code, out.getvalue(), err.getvalue())


def run_commits(repo: Path, branch: str = "HEAD") -> list[dict[str, str]]:
    """Commits made by ralph on `branch`: subject, run and iteration trailers."""
    fmt = "%H%x1f%s%x1f%(trailers:key=Ralph-Run,valueonly)%x1f%(trailers:key=Ralph-Iteration,valueonly)%x1e"
    out = git(repo, "log", f"--format={fmt}", branch)
    commits = []
    for record in out.split("\x1e"):
        parts = [p.strip() for p in record.strip().split("\x1f")]
        if len(parts) == 4 and parts[2]:
            commits.append(
                {"sha": parts[0], "subject": parts[1], "run": parts[2], "iteration": parts[3]}
            )
    return list(reversed(commits))


def only_run(repo: Path) -> dict[str, Any]:
    """`ralph show RUN --json` of the repository's only run, made in process by the functions
    `ralph runs --json` and `ralph show --json` call (their CLI is tested on its own): two
    processes fewer for each of the many tests that look at a run."""
    import io

    from ralph.store.history import runs_command, show_command

    listed = io.StringIO()
    runs_command(repo, True, listed)
    runs = json.loads(listed.getvalue())
    assert len(runs) == 1, runs
    shown = io.StringIO()
    show_command(repo, runs[0]["id"], True, shown)
    data: dict[str, Any] = json.loads(shown.getvalue())
    return data


def repo_and_prompt(
    tmp_path: Path, prompt: str, files: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """A git repository with `files` and a prompt file beside it."""
    repo = make_repo(tmp_path / "repo", files)
    path = tmp_path / "harden.md"
    path.write_text(prompt)
    return repo, path


def wait_for(ready: Callable[[], bool], what: str, timeout: float = HANG) -> None:
    """Poll `ready()` until it is true; fail naming `what` after `timeout` seconds. The bound
    only ends a hang: it is far above what any step takes on a loaded machine."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def interrupt_when(ready: Callable[[], bool], work: Callable[[], object]) -> float:
    """Run `work()` in this (main) thread and, once `ready()` (a request is in flight, a wait
    has begun), send SIGALRM to it, whose handler raises Interrupted as ralph's does. Check
    that Interrupted comes out of `work` and return the seconds it took after the signal.

    The signal is armed by the event the test is about, never by a clock: the set-up before
    it (importing the SDK alone) takes seconds on a busy machine."""
    from ralph.errors import Interrupted

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    main, sent = threading.get_ident(), []

    def watch() -> None:
        wait_for(ready, "the moment to interrupt")
        time.sleep(0.05)  # into the blocking call itself
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGALRM)

    previous = signal.signal(signal.SIGALRM, handler)
    watcher = threading.Thread(target=watch, daemon=True)
    try:
        watcher.start()
        try:
            work()
        except Interrupted:
            return time.monotonic() - sent[0]
        raise AssertionError(f"{work} returned without being interrupted")
    finally:
        watcher.join(HANG + 10)
        signal.signal(signal.SIGALRM, previous)


def interrupt_in_iteration(
    args: list[str], *, cwd: Path, env: dict[str, str], iteration: int = 2
) -> str:
    """Run `ralph-loop ARGS --log-format plain`, SIGINT it once iteration `iteration` has
    started, check it exits 130, and return its stdout."""
    import signal
    import time

    proc = subprocess.Popen(
        [str(BIN / "ralph-loop"), *args, "--log-format", "plain"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + HANG
    while f"iteration {iteration}/" not in proc.stderr.readline():
        assert time.monotonic() < deadline and proc.poll() is None
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGINT)
    stdout, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 130
    return stdout


T = TypeVar("T")
OPEN_TOOLS: list[Any] = []  # tools a test made; conftest closes them after it (private HOMEs)


def closed_after_test(tool: T) -> T:
    """Register `tool` (anything with close()) to be closed when the current test ends."""
    OPEN_TOOLS.append(tool)
    return tool

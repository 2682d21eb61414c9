"""The one way ralph runs git: on a repository an agent has written, without running its code.

git runs programs named in configuration: hooks, `core.fsmonitor`, filter drivers (a clean
filter is a command, and `.gitattributes`, which the agent writes, picks the files it runs
on), textconv and external diff drivers, and it enters nested repositories (submodules,
gitlinks) and honours *their* configuration, which the agent writes even inside the sandbox.
Every git command ralph runs (workspace, push, demo, reports) goes through `run`, which:

- overrides on the command line, which beats every configuration file, each key that makes
  the commands ralph uses run a program: hooks, fsmonitor, every filter driver configured
  anywhere (listed with `git config` just before each command that may read the work tree
  or the index, so a driver added since is covered), submodule recursion, automatic gc and maintenance,
  signing, pager;
- is always told to leave submodules alone (`diff.ignoreSubmodules=all`; callers pass
  `--ignore-submodules=all` where a command takes it) and only diff plumbing is used (no
  textconv, no external diff); the workspace never stages a nested repository;
- gets the runner's environment minus secret-named variables and the variables that would
  point git at another repository or program (`GIT_DIR`, `GIT_INDEX_FILE`,
  `GIT_EXTERNAL_DIFF`, ...);
- is time-bounded and runs in a process group of its own: a terminal's Ctrl-C reaches ralph,
  which finishes or abandons the command, not git halfway through a commit; once a stop was
  requested a command gets a few seconds; one that overruns gets SIGTERM (git removes its
  lock files), then SIGKILL. A second signal's immediate exit spares it (signals.SPARED):
  killed halfway through writing the index, git would leave index.lock behind.

What this cannot cover: with `--sandbox none` the agent runs as your user and can change
`.git/config`, your `~/.gitconfig` or the `git` on PATH; push then uses whatever credential
helper and ssh settings it finds there (see README "Safety").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import RalphError
from ..redact import is_secret_name
from ..run.signals import SPARED, STOP

TIMEOUT_S = 120.0  # the longest one runner-side git command may take
STOPPING_TIMEOUT_S = 5.0  # ... once a stop (SIGINT/SIGTERM) was requested
KILL_GRACE_S = 2.0  # between SIGTERM and SIGKILL
INDEX_LOCK_WAIT_S = 3.0  # how long a command waits for another git's index.lock

SAFE_CONFIG = (
    "core.hooksPath=/dev/null",  # also post-commit, reference-transaction, post-index-change
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "diff.ignoreSubmodules=all",
    "status.submoduleSummary=false",
    "fetch.recurseSubmodules=false",
    "push.recurseSubmodules=no",
    "protocol.ext.allow=never",  # ext:: URLs run a command
    "core.pager=cat",
    "commit.gpgSign=false",  # a pinentry prompt nobody answers would hang an overnight run
    "tag.gpgSign=false",
    "gc.auto=0",  # `git commit` would start gc or maintenance in the background
    "maintenance.auto=false",
    "core.quotePath=false",
)
_OPTIONS = (
    *(arg for item in SAFE_CONFIG for arg in ("-c", item)),
    "--no-pager",
    "--literal-pathspecs",  # a file named `*.py` is that file, not a glob
)
# Commands that never read the index or the work tree, so no filter can run in them. Every
# other command gets the filter overrides: even `write-tree` re-reads "racily clean" files
# through their clean filter when it writes the index.
_NO_WORK_TREE = frozenset(
    {"cat-file", "check-ref-format", "commit-tree", "config", "diff-tree", "init", "ls-remote",
     "ls-tree", "push", "remote", "rev-list", "rev-parse", "show-ref", "symbolic-ref",
     "update-ref", "var", "version"}
)  # fmt: skip
# Variables that would make git use another repository, index or program than ralph means.
_DROPPED_ENV = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
     "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_EXTERNAL_DIFF",
     "GIT_CONFIG_PARAMETERS", "GIT_PAGER", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR",
     "GIT_ATTR_SOURCE", "GIT_QUARANTINE_PATH"}
)  # fmt: skip
_FILTER_KEYS = ("clean", "smudge", "process")


class GitTimeout(RalphError):
    """A git command ran past its time and was stopped."""


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a runner-side git command: ralph's, minus secrets and redirections."""

    env = {k: v for k, v in os.environ.items() if not is_secret_name(k) and k not in _DROPPED_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", GIT_EDITOR=":")
    env.update(extra or {})
    return env


def _subcommand(args: Sequence[str]) -> str:
    """The git command in `args` (after any `-c key=value` options of the caller)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-c":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return "command"


def filter_drivers(cwd: Path, env: Mapping[str, str]) -> list[str]:
    """The names of the filter drivers configured anywhere git looks from `cwd`."""
    proc = _spawn(cwd, ("config", "-z", "--get-regexp", r"^filter\."), None, env, TIMEOUT_S)
    if proc.returncode not in (0, 1):  # 1: none configured
        raise RalphError(error_line(("config",), cwd, proc))
    names = []
    for record in proc.stdout.split(b"\0"):
        key = record.split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
        name, _, _ = key.removeprefix("filter.").rpartition(".")
        if key.startswith("filter.") and name and name not in names:
            names.append(name)
    return names


def _filters_off(cwd: Path, env: dict[str, str], names: Sequence[str] | None) -> None:
    """Add GIT_CONFIG_* entries to `env` that turn every configured filter driver into a no-op
    (empty commands: git passes content through) that is not required to succeed.

    Environment entries, not `-c`: a driver's name may hold `=`, which `-c` would split on.
    They follow the operator's own GIT_CONFIG_* entries, so they win over them too.
    """
    count = int(env.get("GIT_CONFIG_COUNT", "0") or "0")
    for name in filter_drivers(cwd, env) if names is None else names:
        for key, value in [*((k, "") for k in _FILTER_KEYS), ("required", "false")]:
            env[f"GIT_CONFIG_KEY_{count}"] = f"filter.{name}.{key}"
            env[f"GIT_CONFIG_VALUE_{count}"] = value
            count += 1
    env["GIT_CONFIG_COUNT"] = str(count)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM git's process group (git deletes its lock files on it), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _stop_requested() -> bool:
    return STOP.requested


def _spawn(
    cwd: Path,
    args: Sequence[str],
    stdin: bytes | None,
    env: Mapping[str, str],
    timeout: float,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git SAFE-OPTIONS ARGS` to completion or until its time is up (GitTimeout)."""
    argv = ["git", *_OPTIONS, *args]
    # Input comes from a file, not a pipe: communicate() resumed after a timeout never writes
    # the rest of its input, so a pipe deadlocks a slow git that has not read it all yet.
    with tempfile.TemporaryFile() if stdin is not None else contextlib.nullcontext() as feed:
        if feed is not None and stdin is not None:
            feed.write(stdin)
            feed.seek(0)
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=feed if feed is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
    SPARED.add(proc.pid)
    started = time.monotonic()
    try:
        while True:
            limit = STOPPING_TIMEOUT_S if _stop_requested() else timeout
            left = started + limit - time.monotonic()
            if left <= 0:
                raise GitTimeout(
                    f"git {_subcommand(args)} took over {limit:.0f}s in {cwd} and was stopped "
                    "(a huge repository, or a file that blocks when read?)"
                )
            try:
                out, err = proc.communicate(timeout=min(left, 0.5))
                break
            except subprocess.TimeoutExpired:
                continue
    except BaseException:  # the timeout, or Interrupted raised by a signal handler
        _stop_group(proc)
        raise
    finally:
        SPARED.discard(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _index_locked(stderr: bytes) -> bool:
    """Whether git failed because another git process holds (or a killed one left) index.lock."""
    return b"index.lock'" in stderr


def error_line(args: Sequence[str], cwd: Path, proc: subprocess.CompletedProcess[bytes]) -> str:
    """One line for a failed git command: git's own error line (`fatal:`/`error:`), not the
    advice that follows it, which does not name the problem."""
    lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    error = (errors or lines or [f"exit {proc.returncode}"])[0]
    if b".lock': " in proc.stderr:  # git's "Unable to create '...lock': File exists."
        error += (
            " (another git command is running in this repository, or one was killed: if none "
            "is running, delete that file)"
        )
    return f"git {_subcommand(args)} failed in {cwd}: {error}"


def run(
    cwd: Path,
    *args: str,
    stdin: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    filters: Sequence[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run one git command in `cwd` safely (see the module's docstring); a failure raises
    RalphError with git's own message unless `check` is False.

    `env` adds to (or overrides) the safe environment. `filters`: the filter drivers
    `filter_drivers` listed for `cwd` since the agent last ran, to save listing them again. A command that finds the index locked
    runs again for up to INDEX_LOCK_WAIT_S: an editor's or the user's `git status` takes the
    lock for a moment, and a command that could not take it has changed nothing yet.
    """
    full_env = git_env(env)
    if _subcommand(args) not in _NO_WORK_TREE:
        _filters_off(cwd, full_env, filters)
    deadline: float | None = None
    while True:
        proc = _spawn(cwd, args, stdin, full_env, timeout)
        if proc.returncode == 0 or not _index_locked(proc.stderr):
            break
        now = time.monotonic()
        deadline = now + INDEX_LOCK_WAIT_S if deadline is None else deadline
        if now >= deadline:
            break
        time.sleep(0.05)
    if check and proc.returncode != 0:
        raise RalphError(error_line(args, cwd, proc))
    return proc


def out(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    """The stripped standard output of a git command that must succeed."""
    return run(cwd, *args, stdin=stdin).stdout.decode("utf-8", "surrogateescape").strip()

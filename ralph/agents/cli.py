"""What every agent CLI shares: finding and checking the binary, the private configuration
home, and one sandboxed process per iteration whose output becomes bus events."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import Interrupted, UsageError
from ..events import Bus
from ..models.base import ModelError, Usage
from ..run.agent import IterationCut, IterationOutcome
from ..tools.sandbox import Sandbox
from .base import StopCheck
from .process import cli_env, install_dirs, new_outcome, run_lines, sandboxed

VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Files copied from the runner's configuration, at most this many bytes each.
CONFIG_FILE_LIMIT = 1_000_000


def find_binary(name: str, variable: str, environ: Mapping[str, str]) -> str:
    """The CLI's executable: `variable` when set (a path or a name on PATH), else `name`."""
    given = environ.get(variable, "").strip()
    found = shutil.which(given or name, path=environ.get("PATH", os.defpath))
    if found is None:
        where = f"{variable}={given}" if given else f"{name} on PATH"
        raise UsageError(f"--agent {name}: {where} not found; install it or set {variable}")
    return found


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = VERSION.search(text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def check_version(agent: str, binary: str, minimum: tuple[int, int, int], fix: str) -> str:
    """The binary's version line; UsageError when it does not run or is older than `minimum`."""
    try:
        proc = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--agent {agent}: {binary} --version failed ({exc}); {fix}") from None
    line = (proc.stdout.strip() or proc.stderr.strip()).splitlines()[:1]
    version = parse_version(line[0]) if line else None
    if proc.returncode != 0 or version is None:
        raise UsageError(
            f"--agent {agent}: {binary} --version did not give a version "
            f"(exit {proc.returncode}); {fix}"
        )
    if version < minimum:
        need = ".".join(map(str, minimum))
        raise UsageError(
            f"--agent {agent}: {binary} is version {'.'.join(map(str, version))}, older than "
            f"{need}; {fix}"
        )
    return line[0]


def copy_config(source: Path, target: Path, names: Sequence[str]) -> list[str]:
    """Copy the named files and directories of `source` (the runner's config directory) into
    `target` (the sandbox's private one); symlinks are copied as their content. The names
    copied."""
    copied = []
    for name in names:
        src = source / name
        dst = target / name
        try:
            if src.is_file() and src.stat().st_size <= CONFIG_FILE_LIMIT:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                copied.append(name)
            elif src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True, ignore_dangling_symlinks=True)
                copied.append(name)
        except OSError:
            continue
    return copied


class CliAgent:
    """One sandboxed CLI process per iteration (a fresh session each time)."""

    name = "cli"  # the --agent value
    credentials: tuple[str, ...] = ()  # the environment names of its credential
    settings: tuple[str, ...] = ()  # extra non-secret environment names it gets

    def __init__(
        self,
        binary: str,
        sandbox: Sandbox,
        bus: Bus,
        *,
        max_turns: int,
        model: str | None,
        extra_args: Sequence[str] = (),
        pricing: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.sandbox = sandbox
        self.bus = bus
        self.max_turns = max_turns
        self.model = model
        self.extra_args = list(extra_args)
        self.pricing = dict(pricing or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.limited_until: float | None = None  # the usage limit the last iteration hit
        self._configured = False

    # --- what each CLI defines -------------------------------------------------------------

    def command(self, system: str, user_text: str) -> tuple[list[str], bytes | None]:
        """argv and standard input of one iteration."""
        raise NotImplementedError

    def configure(self, home: Path) -> dict[str, str]:
        """Copy the CLI's configuration into the private `home`; extra environment."""
        return {}

    def start(self, out: IterationOutcome) -> Any:
        """A parser for one iteration's JSON lines (fills `out`, emits events)."""
        raise NotImplementedError

    # --- one iteration ---------------------------------------------------------------------

    def iterate(
        self, system: str, user_text: str, iteration: int, stop_check: StopCheck
    ) -> IterationOutcome:
        out = new_outcome()
        try:
            return self._iterate(system, user_text, out, stop_check)
        except (Interrupted, ModelError) as exc:  # the calls made so far still count
            raise IterationCut(out) from exc

    def _iterate(
        self, system: str, user_text: str, out: IterationOutcome, stop_check: StopCheck
    ) -> IterationOutcome:
        self.limited_until = None
        home = self.sandbox.home
        extra = self.configure(home)
        env = cli_env(home, self.credentials, self.environ, (*SETTINGS, *self.settings))
        env.update(extra)
        argv, stdin = self.command(system, user_text)
        launch = sandboxed(self.sandbox, argv, env, install_dirs(self.binary))
        parser = self.start(out)
        began = time.monotonic()

        own: list[str] = []  # the CLI's own limit (--max-turns), which ends it like a budget

        def should_stop() -> str | None:
            reason = getattr(parser, "should_stop", lambda: None)()
            if reason:
                own.append(reason)
                return str(reason)
            pending = getattr(parser, "pending_usage", Usage())
            return stop_check(out.usage + pending, out.cost_usd)

        try:
            spawned = run_lines(launch, stdin, parser.handle, should_stop)
        except BaseException:
            # A signal: the calls made so far still count (recorded from IterationCut).
            with contextlib.suppress(Exception):
                parser.finish(None, "")
            raise
        parser.finish(spawned.returncode, spawned.stderr)
        self.limited_until = parser.limited_until
        if spawned.stopped and not own:
            out.outcome, out.error = "stopped", spawned.stopped
        if parser.fatal:
            raise ModelError(parser.fatal, fatal=True)
        self.bus.emit(
            "agent_process",
            agent=self.name,
            exit_code=spawned.returncode,
            duration_s=round(time.monotonic() - began, 3),
            stderr=spawned.stderr[-500:] if spawned.returncode else "",
        )
        return out

    def close(self) -> None:
        """Remove the private HOME (end of run)."""
        self.sandbox.cleanup()


SETTINGS = ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "IS_SANDBOX")


def usage_of(data: Mapping[str, Any]) -> Usage:
    """An Anthropic-shaped usage mapping as Usage (missing or odd counts are 0)."""

    def count(key: str) -> int:
        value = data.get(key)
        return int(value) if isinstance(value, int | float) else 0

    return Usage(
        count("input_tokens"),
        count("output_tokens"),
        count("cache_creation_input_tokens"),
        count("cache_read_input_tokens"),
    )

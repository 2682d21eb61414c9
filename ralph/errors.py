"""Exit codes and the exceptions that map onto them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes, documented in README and `--help`."""

    COMPLETED = 0  # the completion promise was found and accepted
    ERROR = 1  # runtime error (including an authentication failure)
    USAGE = 2  # usage error or bad input
    MAX_ITERATIONS = 3  # max iterations reached without the promise
    BUDGET = 4  # a budget ran out (cost, tokens, time)
    GUARD = 5  # stopped by a guard (stall, repeated failures)
    INTERRUPTED = 130  # SIGINT / SIGTERM


EXIT_CODES_HELP = (
    "Exit codes: 0 completed (promise accepted) · 1 runtime error · 2 usage or bad input · "
    "3 max iterations reached without the promise · 4 a budget ran out (cost, tokens, time) · "
    "5 stopped by a guard (stall, repeated failures) · 130 interrupted (SIGINT/SIGTERM) or "
    "stopped by `ralph stop`."
)


class RalphError(Exception):
    """An error with a one-line message for the user and an exit code."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(RalphError):
    """Bad input: options, prompt files, configuration. Exit 2, nothing created."""

    exit_code = ExitCode.USAGE


class Interrupted(BaseException):
    """Raised from a signal handler to abandon whatever is in flight.

    A BaseException on purpose: the anthropic SDK wraps ordinary exceptions raised during a
    request into APIConnectionError and retries them, which would swallow the signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

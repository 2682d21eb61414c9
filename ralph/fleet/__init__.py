"""Many repositories on Temporal: `ralph fleet worker|submit|status|show|cancel|steer|schedule`.

One Temporal workflow per repository runs ralph's own loop one iteration at a time, each
iteration an activity on whichever worker is free; the run branch is pushed after every
iteration, so another worker continues a run whose worker died. A fleet workflow starts
them and keeps the fleet-wide budget. Needs the optional `fleet` extra (temporalio and the
temporal CLI); nothing here is imported by `ralph-loop` or the other commands.
"""

from __future__ import annotations

from ..errors import UsageError

EXTRA_HINT = "pip install 'ralph-hardening[fleet]'"


def require_extra() -> None:
    """Raise a UsageError naming the fix when the `fleet` extra (temporalio) is missing."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise UsageError(
            f"the fleet commands need the Temporal SDK, which is not installed: {EXTRA_HINT}"
        ) from None

"""Run statuses: one table of exit codes, labels and resumability, read by every view."""

from __future__ import annotations

from ralph.errors import ExitCode, Interrupted, UsageError
from ralph.status import FINISHED, RESUMABLE, Outcome, RunStatus, status_of
from ralph.views.report import RunSummary, complete


def test_every_status_has_an_exit_code_a_label_and_a_side() -> None:
    for status in RunStatus:
        assert isinstance(status.exit_code, ExitCode)
        assert status.label
        assert status.finished != status.resumable
    assert set(FINISHED) == {"completed", "max_iterations", "budget", "stalled"}
    assert {"interrupted", "stopped", "error", "failed", "crashed", "running"} <= RESUMABLE
    assert RunStatus.STOPPED.exit_code == ExitCode.INTERRUPTED == 130
    assert RunStatus("max_iterations") == "max_iterations"  # stored and read as plain strings
    assert {o.value for o in Outcome if o.failure} == {"failed", "refused"}


def test_status_of_an_exception_keeps_its_exit_code() -> None:
    assert status_of(Interrupted(2))[:2] == (RunStatus.INTERRUPTED, ExitCode.INTERRUPTED)
    assert status_of(UsageError("bad input")) == (RunStatus.ERROR, ExitCode.USAGE, "bad input")
    assert status_of(OSError("disk")) == (RunStatus.ERROR, ExitCode.ERROR, "OSError: disk")


def test_the_report_of_a_run_cut_short_agrees_with_the_process_exit_code() -> None:
    # The runner exits with a RalphError's own code; the report used to say 1 whatever it was.
    summary = complete(RunSummary(run_id="r1"), None, None, UsageError("journal unreadable"))
    assert (summary.status, summary.exit_code) == ("error", 2)
    assert summary.resume == "ralph resume r1"

"""The event declarations (ralph/events.py) are what runs emit: conftest checks every event
an in-process test emits against them; README's table is generated from them."""

from __future__ import annotations

import pytest

from ralph.events import EVENTS, Bus, Recorder, check_event


def test_an_undeclared_event_or_field_is_refused() -> None:
    check_event("commit", {"sha": "abc", "files": [], "message": "m"})
    with pytest.raises(ValueError, match="'comit' is not declared"):
        check_event("comit", {})
    with pytest.raises(ValueError, match=r"\['promise_accepted'\] not declared"):
        check_event("iteration_ended", {"outcome": "ended", "promise_accepted": True})


def test_the_suite_checks_what_a_bus_emits(_events_as_declared: list[str]) -> None:
    # conftest's fixture wraps Bus.emit: an undeclared field raises, and is kept to fail the
    # test at its end even where the caller swallows the error.
    bus = Bus("run", [Recorder()])
    with pytest.raises(ValueError, match="not declared"):
        bus.emit("iteration_ended", outcome="ended", promise_accepted=True)
    assert len(_events_as_declared) == 1
    _events_as_declared.clear()  # this test's own violation
    assert "promise" in EVENTS["iteration_ended"].fields  # the field the report reads

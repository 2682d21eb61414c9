"""Showing a run: the observers a run's settings ask for.

Plain lines (ralph/views/plain.py), the live view (ralph/views/live.py), JSON logs
(ralph/views/logs.py) and traces (ralph/views/telemetry.py) are separate modules; rich and
OpenTelemetry are imported only once a live view or an exporter is made, so a plain run never
loads them. Their shared formatting is ralph/text.py; the end-of-run summary is
ralph/views/summary.py.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from ..config import RunConfig
from ..events import Observer
from .live import LiveView
from .logs import JsonLines
from .plain import PlainLines
from .telemetry import otel_observer


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def make_observers(cfg: RunConfig, stderr: TextIO | None = None) -> list[Observer]:
    """The observers a run's settings ask for (screen, --log-file, OpenTelemetry).

    The final summary is not an observer: the runner writes it at the end of every run.
    """
    err = stderr or sys.stderr
    observers: list[Observer] = []
    if cfg.log_format == "json":  # JSON is for machines: --quiet does not silence it
        observers.append(JsonLines(err, verbose=cfg.verbose, show_text=cfg.show_text))
    elif cfg.quiet:
        pass
    elif cfg.log_format == "rich" or (cfg.log_format == "auto" and _is_terminal(err)):
        observers.append(LiveView.for_config(cfg, err))
    else:
        observers.append(PlainLines(err, verbose=cfg.verbose, show_text=cfg.show_text))
    if cfg.log_file is not None:
        observers.append(
            JsonLines.to_file(cfg.log_file, verbose=cfg.verbose, show_text=cfg.show_text)
        )

    tracer = otel_observer(cfg)
    if tracer is not None:
        observers.append(tracer)
    return observers

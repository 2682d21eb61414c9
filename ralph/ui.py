"""Showing a run: plain timestamped lines (non-TTY). The live view and JSON logs build on this."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .config import RunConfig
from .events import Event, Observer


def _short(value: object, width: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class PlainLines:
    """One timestamped line per event, no control codes: for CI, pipes and nohup."""

    def __init__(self, out: TextIO | None = None, verbose: bool = False) -> None:
        self.out = out or sys.stderr
        self.verbose = verbose

    def line(self, event: Event) -> str | None:
        d = event.data
        it = f"[{event.iteration}] " if event.iteration else ""
        match event.name:
            case "run_started":
                return f"run {event.run_id}: {d['prompt_name']} with {d['model']} on branch {d['branch']}"
            case "iteration_started":
                return f"{it}iteration started"
            case "tool_finished":
                detail = d["input"].get("command") if isinstance(d["input"], dict) else ""
                status = "error" if d["is_error"] else "ok"
                line = f"{it}{d['tool']} {_short(detail or '', 60)} -> {status}"
                if self.verbose:
                    line += "\n" + str(d["output"])
                return line
            case "model_retry":
                return f"{it}model busy ({d['reason']}); retrying in {d['wait_s']:.1f}s"
            case "promise_seen":
                verdict = "accepted" if d["accepted"] else "rejected"
                reasons = "; ".join(d.get("reasons") or [])
                return f"{it}promise {d['token']} {verdict}" + (
                    f": {_short(reasons, 200)}" if reasons else ""
                )
            case "guard_tripped":
                return f"{it}guard {d['guard']}: {d['message']}"
            case "warning" | "model_error":
                return f"{it}{event.level}: {d['message']}"
            case "iteration_ended":
                commit = f" commit {d['commit'][:8]}" if d.get("commit") else ""
                return f"{it}iteration {d['outcome']}: {_short(d['summary'])}{commit}"
            case "run_ended":
                line = f"run {d['status']} after {d['iterations']} iteration(s): {d['reason']}"
                if d.get("resume"):
                    line += f"\nresume with: {d['resume']}"
                return line
        return None

    def handle(self, event: Event) -> None:
        text = self.line(event)
        if text is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
            self.out.write(f"{stamp} {text}\n")
            self.out.flush()

    def close(self) -> None:
        pass


def make_observers(cfg: RunConfig) -> list[Observer]:
    """The observers a run's settings ask for."""
    if cfg.quiet:
        return []
    return [PlainLines(verbose=cfg.verbose)]

"""JSON lines: one JSON object per line for every run event, for CI and log collectors.

Every record has `ts` (ISO 8601 UTC, milliseconds), `level`, `event`, `run_id` and
`iteration` (null outside an iteration), then the event's own fields (see ralph/events.py and
README "Structured logs"). Streamed `model_text` deltas are aggregated into one `model_text`
record per model call. In `--log-format json` mode everything else that reaches stderr is JSON
too: usage errors (`error`), Python warnings (`warning`), library log records (`log`) and
uncaught exceptions (`exception`, with the traceback). All of it goes through `ralph.redact`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from .. import __version__
from ..errors import UsageError
from ..events import Event
from ..redact import redact_obj
from ..text import clip, clip_all

TEXT_KEEP = 2000  # characters of an aggregated model_text / final_text kept without --show-text
OUTPUT_KEEP = 4000  # characters of a tool's output kept without -v
STRING_KEEP = 1000  # characters of any one string inside a tool's input
COST_DIGITS = 6  # a millionth of a dollar: finer than any price, coarser than float noise
ENVELOPE = ("ts", "level", "event", "run_id", "iteration")

_write_lock = threading.Lock()
_current_run_id: str | None = None  # stamped on warnings and tracebacks raised mid-run


def iso_ts(ts: float | None = None) -> str:
    """`2025-01-02T03:04:05.678Z`: an epoch time as ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(
    event: str,
    data: Mapping[str, Any] | None = None,
    *,
    level: str = "info",
    run_id: str | None = None,
    iteration: int | None = None,
    ts: float | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A log record: the envelope, then `data` and `fields` (a field named like an envelope
    key is renamed `data_<key>`, so the envelope always means the same thing)."""
    out: dict[str, Any] = {
        "ts": iso_ts(ts),
        "level": level,
        "event": event,
        "run_id": run_id if run_id is not None else _current_run_id,
        "iteration": iteration,
    }
    for key, value in {**(data or {}), **fields}.items():
        out[f"data_{key}" if key in ENVELOPE else key] = value
    return out


def dumps(rec: dict[str, Any]) -> str:
    """One redacted JSON line (no newline) for a record."""

    return json.dumps(redact_obj(rec), ensure_ascii=False, default=str)


def write_line(rec: dict[str, Any], out: TextIO | None = None) -> None:
    """Write one record as a JSON line to `out` (default: the real stderr) and flush."""
    stream = out or sys.__stderr__ or sys.stderr
    line = dumps(rec) + "\n"
    with _write_lock:
        stream.write(line)
        stream.flush()


def event_fields(event: Event, *, verbose: bool = False, show_text: bool = False) -> dict[str, Any]:
    """An event's fields as logged: long text clipped unless -v / --show-text asks for it."""
    data = dict(event.data)
    if event.name in ("tool_started", "tool_finished"):
        data["input"] = clip_all(data.get("input"), STRING_KEEP)
    if event.name == "tool_finished":
        output = str(data.get("output") or "")
        data["output"] = output if verbose else clip(output, OUTPUT_KEEP)
        data["output_chars"] = len(output)
    if event.name == "iteration_ended" and data.get("final_text") and not show_text:
        data["final_text"] = clip(str(data["final_text"]), TEXT_KEEP)
    if event.name == "run_started" and isinstance(data.get("config"), dict):
        # The prompt text is long and already named by `prompt`; the rest is the settings.
        data["config"] = {k: v for k, v in data["config"].items() if k != "prompt"}
    for key in ("cost_usd", "earlier_cost_usd"):
        if isinstance(data.get(key), float):  # sums of prices: 0.009194, not 0.00919399999…
            data[key] = round(data[key], COST_DIGITS)
    return data


class JsonLines:
    """An observer writing one JSON object per line (stderr in json mode, or --log-file)."""

    def __init__(
        self,
        out: TextIO,
        *,
        verbose: bool = False,
        show_text: bool = False,
        owns_stream: bool = False,
    ) -> None:
        self.out = out
        self.verbose = verbose
        self.show_text = show_text
        self.owns_stream = owns_stream
        self._text: list[str] = []  # streamed text of the model call in flight
        self._text_started: float | None = None

    @classmethod
    def to_file(cls, path: Path, *, verbose: bool = False, show_text: bool = False) -> JsonLines:
        """Append JSON lines to `path` (created with its directory); UsageError if it can't."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = path.open("a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise UsageError(
                f"cannot write --log-file {path}: {exc.strerror or exc}; choose a writable path"
            ) from None
        return cls(stream, verbose=verbose, show_text=show_text, owns_stream=True)

    def handle(self, event: Event) -> None:
        global _current_run_id
        _current_run_id = event.run_id
        if event.name == "conversation":
            # The whole iteration (prompt, every tool output unclipped) is the journal's, for
            # `ralph show --iteration N`; the log has it event by event, clipped.
            return
        if event.name == "model_text":
            if not self._text:
                self._text_started = event.ts
            self._text.append(str(event.data.get("text") or ""))
            return
        if event.name in ("model_call", "model_error"):
            self._flush_text(event)
        elif event.name == "model_started":
            self._text = []
        fields = event_fields(event, verbose=self.verbose, show_text=self.show_text)
        self._write(
            record(
                event.name,
                fields,
                level=event.level,
                run_id=event.run_id,
                iteration=event.iteration,
                ts=event.ts,
            )
        )

    def _flush_text(self, event: Event) -> None:
        """The aggregated `model_text` record of the call that `event` ends."""
        if not self._text:
            return
        text, self._text = "".join(self._text), []
        self._write(
            record(
                "model_text",
                level="debug",
                run_id=event.run_id,
                iteration=event.iteration,
                ts=self._text_started or event.ts,
                turn=event.data.get("turn"),
                text=text if self.show_text else clip(text, TEXT_KEEP),
                chars=len(text),
            )
        )

    def _write(self, rec: dict[str, Any]) -> None:
        write_line(rec, self.out)

    def close(self) -> None:
        if self.owns_stream:
            self.out.close()


# --- everything else on stderr, in json mode -------------------------------------------------


def json_mode_requested(argv: Sequence[str] | None = None, environ: Any = None) -> bool:
    """Whether this command line (or RALPH_LOG_FORMAT) asks for JSON logs, before parsing."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--log-format" and i + 1 < len(args):
            return args[i + 1].strip().lower() == "json"
        if arg.startswith("--log-format="):
            return arg.split("=", 1)[1].strip().lower() == "json"
    return str(env.get("RALPH_LOG_FORMAT", "")).strip().lower() == "json"


_settings_json = False  # the run's merged settings (ralph.yaml, front matter, ...) say json


def settings_log_format(log_format: object) -> None:
    """Record the log format a run's merged settings chose (ralph.yaml and front matter
    included), so errors raised after they are read are JSON when the settings say so."""
    global _settings_json
    _settings_json = str(log_format or "").strip().lower() == "json"


def json_active() -> bool:
    """Whether stderr is JSON in this process: asked for on the command line or by the
    environment, chosen by the run's settings (`log_format: json` in ralph.yaml or front
    matter), or switched on by a run."""
    return _installed or _settings_json or json_mode_requested()


def error_line(message: str, code: int | None = None) -> None:
    """A one-line error (a usage error, say) as a JSON record on stderr."""
    write_line(record("error", level="error", message=message, exit_code=code))


class _JsonHandler(logging.Handler):
    """Library log records and routed `warnings` as JSON lines on stderr."""

    def emit(self, rec: logging.LogRecord) -> None:
        try:
            if rec.name == "py.warnings":
                fields: dict[str, Any] = {
                    "message": getattr(rec, "_ralph_message", rec.getMessage().strip())
                }
                fields.update(getattr(rec, "_ralph_fields", {}))
                write_line(record("warning", fields, level="warning", ts=rec.created))
                return
            extra: dict[str, Any] = {"logger": rec.name, "message": rec.getMessage()}
            if rec.exc_info and rec.exc_info[0] is not None:
                extra["traceback"] = "".join(traceback.format_exception(*rec.exc_info))
            write_line(record("log", extra, level=rec.levelname.lower(), ts=rec.created))
        except Exception:  # a log line must never take the run down
            self.handleError(rec)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning` in json mode: through the logger, as a structured record."""
    logger = logging.getLogger("py.warnings")
    logger.warning(
        str(message),
        extra={
            "_ralph_message": str(message),
            "_ralph_fields": {"category": category.__name__, "source": f"{filename}:{lineno}"},
        },
    )


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    write_line(
        record(
            "exception",
            level="critical",
            type=kind.__name__,
            message=str(value),
            traceback="".join(traceback.format_exception(kind, value, tb)),
        )
    )


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _excepthook(args.exc_type, args.exc_value, args.exc_traceback)


_installed = False


def install_json_stderr(level: int = logging.WARNING) -> None:
    """Make every line this process writes to stderr a JSON record (json mode).

    Routes Python warnings through logging (one handler, JSON), formats library log records
    and uncaught exceptions (any thread) as JSON. Idempotent.
    """
    global _installed
    if _installed:
        return
    _installed = True
    root = logging.getLogger()
    root.addHandler(_JsonHandler(level))
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    logging.captureWarnings(True)
    # captureWarnings formats the warning into text; ours keeps category and source apart.

    warnings.showwarning = _show_warning
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


def run_app(app: Callable[..., Any], prog_name: str) -> None:
    """Run a typer app: `--version`; command-line errors (unknown option, bad value) as the
    same one line as every other error (`PROG: error: ...`), a JSON record in json mode."""
    if sys.argv[1:2] in (["--version"], ["-V"]):
        sys.stdout.write(f"{prog_name} {__version__}\n")
        sys.exit(0)
    import typer  # 30 ms: not for --version

    json_mode = json_mode_requested()
    if json_mode:
        install_json_stderr()
    try:
        code = app(prog_name=prog_name, standalone_mode=False)
    except typer.TyperException as exc:  # click's usage and parameter errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments at all: the help
            sys.stderr.write(exc.format_message() + "\n")
            sys.exit(exc.exit_code)
        message = " ".join(exc.format_message().split())
        if json_mode:
            error_line(message, exc.exit_code)
        else:
            sys.stderr.write(f"{prog_name}: error: {message} (see {prog_name} --help)\n")
        sys.exit(exc.exit_code)
    except typer.Abort:
        if json_mode:
            error_line("aborted", 1)
        else:
            sys.stderr.write(f"{prog_name}: error: aborted\n")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

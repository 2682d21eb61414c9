"""OpenTelemetry traces of a run (the optional `otel` extra).

When the extra is installed and `OTEL_EXPORTER_OTLP_ENDPOINT` (or `--otel`) is set, a span
tree is exported over OTLP/HTTP: `ralph.run` > `ralph.iteration` > `chat {model}` (one per
model call, GenAI semantic-convention attributes) and `execute_tool {tool}` (one per tool
call). Nothing here imports OpenTelemetry until a run asks for traces, so without the extra
(or without the setting) a run neither imports nor waits for it.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..config import RunConfig
from ..errors import UsageError
from ..events import Event, Observer
from ..redact import redact
from ..status import RunStatus

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TIMEOUT_VARS = ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
EXPORT_TIMEOUT_S = 4.0  # one export, retries included
FLUSH_TIMEOUT_MS = 5000  # the run is over: don't make the user wait long on a dead collector
ERROR_STATUSES = {s.value for s in RunStatus if s.failure}
FAILED_OUTCOMES = {"failed", "refused", "context_exceeded"}
ATTR_KEEP = 1000  # characters of a string attribute (a bash command, an error message)


def otel_wanted(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run asks for traces: --otel, or an OTLP endpoint in the environment."""
    env = os.environ if environ is None else environ
    return cfg.otel or any(env.get(name) for name in ENDPOINT_VARS)


def otel_installed() -> bool:
    """Whether the `otel` extra (SDK and OTLP/HTTP exporter) can be imported."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:
        return False


def otel_observer(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> Observer | None:
    """A TraceObserver exporting over OTLP/HTTP when the run asks for traces, else None."""
    if not otel_wanted(cfg, environ):
        return None
    if not otel_installed():
        if cfg.otel:
            raise UsageError(
                "--otel needs the OpenTelemetry extra: .venv/bin/pip install -e '.[otel]' in the "
                "ralph-loop checkout (or drop --otel)"
            )
        return None  # an endpoint set for other programs: no traces without the extra
    return TraceObserver(otlp_provider(environ))


def otlp_provider(environ: Mapping[str, str] | None = None) -> Any:
    """A TracerProvider batching spans to the OTLP/HTTP endpoint the environment names."""
    # OpenTelemetry: the optional `otel` extra, loaded only when an endpoint is set
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # (the extra)
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource  # (the extra)
    from opentelemetry.sdk.trace import TracerProvider  # (the extra)
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # (the extra)

    env = os.environ if environ is None else environ
    attributes = {"service.version": __version__}
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over our default name.
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = "ralph-loop"
    provider = TracerProvider(resource=Resource.create(attributes))
    # The SDK's default (10 s, retries included) would hold up the end of every run when the
    # collector is down; OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT still wins when set.
    timeout = None if any(env.get(name) for name in TIMEOUT_VARS) else EXPORT_TIMEOUT_S
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=timeout)))
    return provider


def _ns(ts: float) -> int:
    return int(ts * 1_000_000_000)


def _text(value: Any) -> str:
    text = redact(str(value))
    return text if len(text) <= ATTR_KEEP else text[: ATTR_KEEP - 1] + "…"


def _usage_attributes(usage: Any) -> dict[str, int]:
    """GenAI usage attributes; input_tokens counts cached input too, as the conventions ask."""
    u = usage if isinstance(usage, dict) else {}
    read = int(u.get("cache_read_input_tokens") or 0)
    written = int(u.get("cache_creation_input_tokens") or 0)
    return {
        "gen_ai.usage.input_tokens": int(u.get("input_tokens") or 0) + read + written,
        "gen_ai.usage.output_tokens": int(u.get("output_tokens") or 0),
        "gen_ai.usage.cache_read.input_tokens": read,
        "gen_ai.usage.cache_creation.input_tokens": written,
    }


class TraceObserver:
    """Turns run events into spans: run > iteration > model call / tool call."""

    def __init__(self, provider: Any, *, owns_provider: bool = True) -> None:
        from opentelemetry import trace  # the optional `otel` extra

        self._trace = trace
        self.provider = provider
        self.owns_provider = owns_provider
        self.tracer = provider.get_tracer("ralph-loop")
        self.provider_name = "anthropic"
        self.request_model = ""
        self.max_tokens: int | None = None
        self.run: Any = None
        self.iteration: Any = None
        self.model_call: Any = None
        self.tools: dict[str, Any] = {}

    def _start(
        self, name: str, parent: Any, ts: float, attributes: dict[str, Any], kind: Any = None
    ) -> Any:
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(
            name,
            context=context,
            kind=kind if kind is not None else self._trace.SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(ts),
        )

    def _error(self, span: Any, error_type: str, message: str) -> None:
        from opentelemetry.trace import Status, StatusCode  # the optional `otel` extra

        span.set_attribute("error.type", error_type)
        span.add_event(
            "exception", {"exception.type": error_type, "exception.message": _text(message)}
        )
        span.set_status(Status(StatusCode.ERROR, _text(message)))

    def _parent(self) -> Any:
        return self.iteration if self.iteration is not None else self.run

    def handle(self, event: Event) -> None:
        handler = getattr(self, "_on_" + event.name, None)
        if handler is not None:
            handler(event, event.data)
        elif event.name in ("promise_seen", "guard_tripped", "commit", "warning"):
            span = self._parent()
            if span is not None:
                attributes = {
                    k: _text(v) if isinstance(v, str | list) else v for k, v in event.data.items()
                }
                span.add_event(
                    event.name,
                    {k: v for k, v in attributes.items() if v is not None},
                    _ns(event.ts),
                )

    def _on_run_started(self, e: Event, d: dict[str, Any]) -> None:
        raw = d.get("config")
        config: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self.request_model = str(d.get("model") or config.get("model") or "")
        if str(config.get("model") or "").startswith("script:"):
            self.provider_name = "ralph.script"  # an offline replay: not a real provider
        self.max_tokens = config.get("max_output_tokens")
        self.run = self._start(
            "ralph.run",
            None,
            e.ts,
            {
                "ralph.run_id": e.run_id,
                "ralph.prompt": _text(d.get("prompt_name")),
                "ralph.branch": _text(d.get("branch")),
                "ralph.max_iterations": int(d.get("max_iterations") or 0),
                "ralph.resumed_at": int(d.get("resumed_at") or 0),
                "gen_ai.request.model": str(d.get("model") or ""),
            },
        )

    def _on_iteration_started(self, e: Event, d: dict[str, Any]) -> None:
        self.iteration = self._start(
            f"ralph.iteration {e.iteration}",
            self.run,
            e.ts,
            {"ralph.run_id": e.run_id, "ralph.iteration": int(e.iteration or 0)},
        )

    def _on_model_started(self, e: Event, d: dict[str, Any]) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.provider_name,
            "gen_ai.system": self.provider_name,
            "gen_ai.request.model": self.request_model,
            "ralph.turn": int(d.get("turn") or 0),
        }
        if self.max_tokens:
            attributes["gen_ai.request.max_tokens"] = int(self.max_tokens)
        self.model_call = self._start(
            f"chat {self.request_model}",
            self._parent(),
            e.ts,
            attributes,
            self._trace.SpanKind.CLIENT,
        )

    def _on_model_retry(self, e: Event, d: dict[str, Any]) -> None:
        if self.model_call is not None:
            self.model_call.add_event(
                "retry",
                {
                    "ralph.wait_s": float(d.get("wait_s") or 0),
                    "ralph.reason": _text(d.get("reason")),
                },
                _ns(e.ts),
            )

    def _on_model_call(self, e: Event, d: dict[str, Any]) -> None:
        span, self.model_call = self.model_call, None
        if span is None:
            return
        span.set_attributes(_usage_attributes(d.get("usage")))
        span.set_attribute("gen_ai.response.model", str(d.get("model") or ""))
        span.set_attribute("gen_ai.response.finish_reasons", [str(d.get("stop_reason"))])
        span.set_attribute("ralph.retries", int(d.get("retries") or 0))
        if d.get("request_id"):
            span.set_attribute("ralph.request_id", str(d["request_id"]))
        if d.get("cost_usd") is not None:
            span.set_attribute("ralph.cost_usd", float(d["cost_usd"]))
        span.end(end_time=_ns(e.ts))

    def _on_model_error(self, e: Event, d: dict[str, Any]) -> None:
        span, self.model_call = self.model_call, None
        if span is None:
            return
        status = d.get("status")
        self._error(span, str(status) if status else "ModelError", str(d.get("message")))
        span.end(end_time=_ns(e.ts))

    def _on_tool_started(self, e: Event, d: dict[str, Any]) -> None:
        tool = str(d.get("tool") or "")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": str(d.get("tool_use_id") or ""),
        }
        raw = d.get("input")
        tool_input: dict[str, Any] = raw if isinstance(raw, dict) else {}
        for key in ("command", "path"):
            if isinstance(tool_input.get(key), str):
                attributes[f"ralph.tool.{key}"] = _text(tool_input[key])
        self.tools[str(d.get("tool_use_id"))] = self._start(
            f"execute_tool {tool}", self._parent(), e.ts, attributes
        )

    def _on_tool_finished(self, e: Event, d: dict[str, Any]) -> None:
        span = self.tools.pop(str(d.get("tool_use_id")), None)
        if span is None:
            return
        if d.get("exit_code") is not None:
            span.set_attribute("ralph.tool.exit_code", int(d["exit_code"]))
        span.set_attribute("ralph.tool.output_chars", len(str(d.get("output") or "")))
        code = d.get("exit_code")
        if d.get("is_error"):
            reason = f"exit code {code}" if code not in (None, 0) else "the tool reported an error"
            self._error(span, "tool_error", reason)
        elif code not in (None, 0):
            # The tool worked but the command failed (bash reports that as is_error false).
            self._error(span, "exit_code", f"exit code {code}")
        span.end(end_time=_ns(e.ts))

    def _on_iteration_ended(self, e: Event, d: dict[str, Any]) -> None:
        span, self.iteration = self.iteration, None
        if span is None:
            return
        outcome = str(d.get("outcome"))
        span.set_attributes(
            {
                "ralph.outcome": outcome,
                "ralph.summary": _text(d.get("summary") or ""),
                "ralph.files_changed": len(d.get("files_changed") or []),
                "ralph.commit": str(d.get("commit") or ""),
                "ralph.promise_accepted": bool(d.get("promise")),
                **_usage_attributes(d.get("usage")),
            }
        )
        if d.get("cost_usd") is not None:
            span.set_attribute("ralph.cost_usd", float(d["cost_usd"]))
        if outcome in FAILED_OUTCOMES:
            self._error(span, outcome, str(d.get("error") or outcome))
        span.end(end_time=_ns(e.ts))

    def _on_run_ended(self, e: Event, d: dict[str, Any]) -> None:
        self._end_open(e.ts, "the run ended first")
        span, self.run = self.run, None
        if span is None:
            return
        status = str(d.get("status"))
        span.set_attributes(
            {
                "ralph.status": status,
                "ralph.exit_code": int(d.get("exit_code") or 0),
                "ralph.reason": _text(d.get("reason") or ""),
                "ralph.iterations": int(d.get("iterations") or 0),
                **_usage_attributes(d.get("usage")),
            }
        )
        if d.get("cost_usd") is not None:
            span.set_attribute("ralph.cost_usd", float(d["cost_usd"]))
        if status in ERROR_STATUSES:
            self._error(span, status, str(d.get("reason")))
        span.end(end_time=_ns(e.ts))

    def _end_open(self, ts: float, why: str) -> None:
        """End the spans a run left open (interrupted tool, crash), innermost first."""
        for span in [*self.tools.values(), self.model_call, self.iteration]:
            if span is not None:
                self._error(span, "aborted", why)
                span.end(end_time=_ns(ts))
        self.tools, self.model_call, self.iteration = {}, None, None

    def close(self) -> None:
        """End what is still open (a crash), then export everything before the process ends."""

        now = time.time()
        self._end_open(now, "the run ended abruptly")
        if self.run is not None:
            self._error(self.run, "crash", "the run ended without a result")
            self.run.end(end_time=_ns(now))
            self.run = None
        if self.owns_provider:
            self.provider.force_flush(FLUSH_TIMEOUT_MS)
            self.provider.shutdown()

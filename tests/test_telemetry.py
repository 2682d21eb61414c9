"""OpenTelemetry: the span tree and GenAI attributes (SDK in-memory exporter), OTLP/HTTP export
of a real run to a local collector, and no OpenTelemetry import when traces are not asked for."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ralph.config import RunConfig
from ralph.errors import UsageError
from ralph.events import Event
from ralph.views.telemetry import TraceObserver, otel_observer, otel_wanted
from tests.helpers import HANG, clean_env, make_repo, run_cli, write_script
from tests.test_ui import RUN_ID, recorded_events


def _spans(events: list[Event], close: bool = True) -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = TraceObserver(provider, owns_provider=False)
    for event in events:
        observer.handle(event)
    if close:
        observer.close()
    return list(exporter.get_finished_spans())


def test_span_tree_and_genai_attributes() -> None:
    events = recorded_events()
    spans = _spans(events)
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: Any) -> Any:
        return by_id[span.parent.span_id] if span.parent else None

    (run,) = [s for s in spans if s.name == "ralph.run"]
    iterations = [s for s in spans if s.name.startswith("ralph.iteration")]
    chats = [s for s in spans if s.name.startswith("chat ")]
    tools = [s for s in spans if s.name.startswith("execute_tool ")]
    assert len(spans) == 1 + len(iterations) + len(chats) + len(tools)
    assert run.parent is None and run.attributes["ralph.run_id"] == RUN_ID
    assert [s.name for s in iterations] == ["ralph.iteration 1", "ralph.iteration 2"]
    assert all(parent(s) is run for s in iterations)
    assert all(parent(s).name.startswith("ralph.iteration") for s in chats + tools)
    assert len({s.context.trace_id for s in spans}) == 1
    assert len(chats) == 4 and len(tools) == 6

    first = chats[0]
    attrs = first.attributes
    assert first.name == "chat claude-sonnet-5-5"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-sonnet-5-5"
    assert attrs["gen_ai.response.model"] == "claude-sonnet-5-5-20260101"
    assert attrs["gen_ai.request.max_tokens"] == 16000
    # input_tokens counts cached input too (the conventions' definition); cache reads apart.
    assert attrs["gen_ai.usage.input_tokens"] == 1200 + 9000
    assert attrs["gen_ai.usage.output_tokens"] == 300
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 9000
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("tool_use",)
    assert [e.name for e in first.events] == ["retry"]
    # The span runs from model_started to model_call.
    started = next(e for e in events if e.name == "model_started")
    called = next(e for e in events if e.name == "model_call")
    assert first.start_time == int(started.ts * 1e9) and first.end_time == int(called.ts * 1e9)

    failed_call = chats[1]  # iteration 1, turn 2: API error 500
    assert failed_call.status.status_code == StatusCode.ERROR
    assert failed_call.attributes["error.type"] == "500"
    assert failed_call.events[0].name == "exception"

    pytest_run = tools[0]
    assert pytest_run.name == "execute_tool bash"
    assert pytest_run.attributes["gen_ai.tool.name"] == "bash"
    assert pytest_run.attributes["gen_ai.tool.call.id"] == "toolu_1_1"
    assert pytest_run.attributes["ralph.tool.command"] == "pytest -q"
    assert pytest_run.attributes["ralph.tool.exit_code"] == 1
    # bash reports a failing command as is_error false with its exit code: still an error span.
    assert pytest_run.status.status_code == StatusCode.ERROR
    assert pytest_run.attributes["error.type"] == "exit_code"
    assert tools[1].status.status_code == StatusCode.UNSET
    assert tools[2].attributes["ralph.tool.path"] == "sdlc/security-audit.md"

    assert iterations[0].status.status_code == StatusCode.ERROR  # outcome failed
    assert iterations[1].attributes["ralph.promise_accepted"] is True
    assert {e.name for e in iterations[0].events} >= {"promise_seen", "commit"}
    assert run.attributes["ralph.status"] == "completed"
    assert run.status.status_code == StatusCode.UNSET
    assert run.attributes["gen_ai.usage.output_tokens"] == 1200


def test_a_crashed_run_still_ends_every_span_with_an_error() -> None:
    events = recorded_events()
    cut = next(i for i, e in enumerate(events) if e.name == "tool_started")
    spans = _spans(events[: cut + 1])
    assert {s.name for s in spans} == {
        "ralph.run",
        "ralph.iteration 1",
        "chat claude-sonnet-5-5",
        "execute_tool bash",
    }
    open_when_cut = [s for s in spans if s.name != "chat claude-sonnet-5-5"]  # the call ended
    assert all(s.status.status_code == StatusCode.ERROR for s in open_when_cut)
    assert all(s.end_time is not None for s in spans)


def test_traces_are_asked_for_by_flag_or_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not otel_wanted(RunConfig(), {})
    assert otel_wanted(RunConfig(otel=True), {})
    assert otel_wanted(RunConfig(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert otel_observer(RunConfig(), {}) is None
    observer = otel_observer(RunConfig(otel=True), {})
    assert isinstance(observer, TraceObserver)
    observer.close()


def test_otel_flag_without_the_extra_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import ralph.views.telemetry as telemetry

    monkeypatch.setattr(telemetry, "otel_installed", lambda: False)
    with pytest.raises(UsageError, match=r"pip install -e '\.\[otel\]'"):
        otel_observer(RunConfig(otel=True), {})
    assert otel_observer(RunConfig(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}) is None


# The entry point leaves with os._exit after running the atexit hooks: report from one.
NO_OTEL_RUN = """
import atexit, sys
from ralph.cli import loop_main
sys.argv = ["ralph-loop", *sys.argv[1:]]
atexit.register(
    lambda: print("otel imported:", any(m.split(".")[0] == "opentelemetry" for m in sys.modules))
)
loop_main()
"""


def _project(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "task.md"
    prompt.write_text("Harden it. Output <promise>DONE</promise> when done.\n")
    script = write_script(
        tmp_path / "s.yaml",
        [
            [
                {"text": "Working.", "tools": [{"bash": {"command": "echo x > a.txt"}}]},
                "Done. <promise>DONE</promise>",
            ]
        ],
    )
    return repo, prompt, script


def test_a_run_without_otel_settings_never_imports_opentelemetry(tmp_path: Path) -> None:
    repo, prompt, script = _project(tmp_path)
    env = {k: v for k, v in clean_env().items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", NO_OTEL_RUN, str(prompt), "--model", f"script:{script}",
         "--repo", str(repo), "--sandbox", "none", "--log-format", "json"],
        capture_output=True, text=True, env=env, cwd=repo, check=False, timeout=HANG,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("otel imported: False"), proc.stderr


class _Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    handler = type("Collector", (_Collector,), {"bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler.bodies
    server.shutdown()
    server.server_close()


def test_a_real_run_exports_its_spans_over_otlp_http(
    tmp_path: Path, collector: tuple[str, list[tuple[str, bytes]]]
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    endpoint, bodies = collector
    repo, prompt, script = _project(tmp_path)
    proc = run_cli(
        [str(prompt), "--model", f"script:{script}", "--repo", str(repo), "--sandbox", "none"],
        cwd=repo,
        env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="ralph-test"),
    )
    assert proc.returncode == 0, proc.stderr
    assert bodies and all(path == "/v1/traces" for path, _ in bodies)
    names, services = [], set()
    for _, body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                names += [span.name for span in scope.spans]
    assert services == {"ralph-test"}
    assert sorted(names) == sorted(
        ["ralph.run", "ralph.iteration 1", "chat script", "chat script", "execute_tool bash"]
    )

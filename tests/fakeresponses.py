"""A local OpenAI Responses API server (`POST /v1/responses`, streaming) for Codex tests.

`FakeResponses` runs a threaded stdlib HTTP/1.1 server on 127.0.0.1 with a free port and
answers each request from a queue of scripted replies (then a `responder(request)`, then
`default`). A `Response` streams as the real API does: `response.created`,
`response.in_progress`, then per output item `response.output_item.added`, its deltas
(`response.output_text.delta`, `response.function_call_arguments.delta`,
`response.custom_tool_call_input.delta`) and `response.output_item.done`, and last
`response.completed` with `usage` (`input_tokens`, `input_tokens_details.cached_tokens`,
`output_tokens`, `total_tokens`). Every request is logged.

    with FakeResponses() as api:
        api.add(Response([message("Looking."), function_call("exec_command", {"cmd": "ls"})]))
        api.add(Response([message("Done. <promise>DONE</promise>")]))
        home = api.codex_home(tmp_path / "codex")  # config.toml with a provider for it

Failures: `HTTPError` (status, JSON body, headers), `Stall` (hang until `release()` / stop).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakeserver import FakeHandler, FakeServer

Item = dict[str, Any]


def message(text: str) -> Item:
    """An assistant message output item."""
    return {"type": "message", "role": "assistant", "text": text}


def function_call(name: str, arguments: dict[str, Any]) -> Item:
    """A function call output item (Codex's `exec_command`, ...)."""
    return {"type": "function_call", "name": name, "arguments": json.dumps(arguments)}


def custom_call(name: str, input: str) -> Item:
    """A custom (freeform) tool call output item (Codex's `apply_patch`)."""
    return {"type": "custom_tool_call", "name": name, "input": input}


@dataclass
class Response:
    """A successful streamed response; usage defaults to sizes / 4."""

    output: list[Item]
    usage: dict[str, int] | None = None  # input_tokens, cached_tokens, output_tokens


@dataclass
class HTTPError:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stall:
    """Send nothing until `release()` or `stop()`, then close."""


def usage_limit(resets_at: float) -> HTTPError:
    """The API's answer when the account's usage limit is reached (429 usage_limit_reached
    with the reset time, in epoch seconds and seconds from now)."""
    body = {
        "error": {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": "plus",
            "resets_at": int(resets_at),
            "resets_in_seconds": max(0, int(resets_at - time.time())),
        }
    }
    return HTTPError(429, body)


Reply = Response | HTTPError | Stall


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    at: float


class FakeResponses(FakeServer):
    """The fake Responses API; a context manager, or start() and stop()."""

    url_path = "/v1"

    def codex_config(self, model: str = "gpt-fake") -> str:
        """A Codex config.toml whose model provider is this server (no retries: a test's
        failure shows at once)."""
        return (
            f'model = "{model}"\nmodel_provider = "fake"\n\n[model_providers.fake]\n'
            f'name = "fake"\nbase_url = "{self.url}"\nenv_key = "OPENAI_API_KEY"\n'
            'wire_api = "responses"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
            "check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n"
        )

    def unscripted(self, n: int) -> Reply:
        return HTTPError(400, {"error": {"message": f"no reply for request #{n}"}})


def _events(api: FakeResponses, body: dict[str, Any], reply: Response) -> list[dict[str, Any]]:
    """The SSE events of one streamed response."""
    rid = api.new_id("resp")
    base = {"id": rid, "object": "response", "created_at": int(time.time()),
            "model": body.get("model", "gpt-fake"), "output": []}  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress"}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress"}},
    ]
    done_items = []
    for index, spec in enumerate(reply.output):
        item, deltas = _item(api, spec, index)
        events.append({"type": "response.output_item.added", "output_index": index,
                       "item": {**item, "status": "in_progress"} | _empty(item)})  # fmt: skip
        events += deltas
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        done_items.append(item)
    in_tokens = max(1, len(json.dumps(body)) // 4)
    out_tokens = max(1, len(json.dumps(done_items)) // 4)
    scripted = reply.usage or {}
    usage_in = scripted.get("input_tokens", in_tokens)
    cached = scripted.get("cached_tokens", 0)
    usage_out = scripted.get("output_tokens", out_tokens)
    usage = {
        "input_tokens": usage_in,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": usage_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage_in + usage_out,
    }
    final = {**base, "status": "completed", "output": done_items, "usage": usage}
    events.append({"type": "response.completed", "response": final})
    return events


def _empty(item: Item) -> Item:
    """The fields of an item as output_item.added shows them: before any delta."""
    if item["type"] == "message":
        return {"content": []}
    if item["type"] == "function_call":
        return {"arguments": ""}
    return {"input": ""}


def _item(api: FakeResponses, spec: Item, index: int) -> tuple[Item, list[dict[str, Any]]]:
    kind = spec["type"]
    if kind == "message":
        iid = api.new_id("msg")
        text = str(spec["text"])
        item = {"type": "message", "id": iid, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
        part = {"type": "output_text", "text": "", "annotations": []}
        common = {"item_id": iid, "output_index": index, "content_index": 0}
        deltas: list[dict[str, Any]] = [
            {"type": "response.content_part.added", **common, "part": part}
        ]
        for i in range(0, max(1, len(text)), 16):
            deltas.append(
                {"type": "response.output_text.delta", **common, "delta": text[i : i + 16]}
            )
        deltas.append({"type": "response.output_text.done", **common, "text": text})
        deltas.append({"type": "response.content_part.done", **common,
                       "part": {**part, "text": text}})  # fmt: skip
        return item, deltas
    iid = api.new_id("fc" if kind == "function_call" else "ctc")
    call_id = api.new_id("call")
    if kind == "function_call":
        args = str(spec["arguments"])
        item = {"type": "function_call", "id": iid, "call_id": call_id, "name": spec["name"],
                "arguments": args, "status": "completed"}  # fmt: skip
        deltas = [
            {
                "type": "response.function_call_arguments.delta",
                "item_id": iid,
                "output_index": index,
                "delta": args[i : i + 7],
            }
            for i in range(0, len(args), 7)
        ]
        deltas.append({"type": "response.function_call_arguments.done", "item_id": iid,
                       "output_index": index, "arguments": args})  # fmt: skip
        return item, deltas
    text = str(spec["input"])
    item = {"type": "custom_tool_call", "id": iid, "call_id": call_id, "name": spec["name"],
            "input": text, "status": "completed"}  # fmt: skip
    deltas = [
        {
            "type": "response.custom_tool_call_input.delta",
            "item_id": iid,
            "output_index": index,
            "delta": text[i : i + 32],
        }
        for i in range(0, len(text), 32)
    ]
    return item, deltas


class _Handler(FakeHandler):
    @property
    def api(self) -> FakeResponses:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:  # Codex asks for /models on some paths: none here
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        raw, data, headers = self._read()
        req = Recorded(self.path, headers, raw, data, time.monotonic())
        if self.path.split("?")[0] != "/v1/responses":
            self.api.requests.append(req)
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        reply = self.api.next_reply(req)
        if isinstance(reply, Stall):
            self.api.released.wait()
            self._drop()
            return
        if isinstance(reply, HTTPError):
            self._json(reply.status, reply.body, reply.headers)
            return
        body = data if isinstance(data, dict) else {}
        self._stream(_events(self.api, body, reply))

    def _stream(self, events: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                self._chunk(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
            self._chunk("")
        except OSError:
            self.close_connection = True


FakeResponses.handler = _Handler


def write_codex_home(path: Path, api: FakeResponses, model: str = "gpt-fake") -> Path:
    """A CODEX_HOME directory whose config.toml points Codex at `api`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(api.codex_config(model))
    return path

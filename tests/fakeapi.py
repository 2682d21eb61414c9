"""A local Anthropic Messages API server for tests and benchmarks.

`FakeAPI` runs a threaded stdlib HTTP/1.1 server on 127.0.0.1 with a free port and answers
`POST /v1/messages` from a queue of scripted replies (then a `responder(request)` callable, then
a `default` reply). Streaming requests get SSE exactly as the real API sends it (`event:` and
`data:` lines, chunked transfer encoding, `message_start` ... `message_stop`, `input_json_delta`
chunks for tool inputs); other requests get the JSON message. Every request is logged.

    with FakeAPI() as api:
        api.add(Message([text("Let me look."), tool_use("bash", {"command": "ls"})]))
        api.add(HTTPError(429, retry_after=1), Message("Done."))
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "test-key"}

Failures: `HTTPError` (status, error type, `retry-after` / `retry-after-ms`), `Stall` (answer
late, or hang until `release()` / `stop()`), `Drop` (close the socket without a response), and
on a `Message`: `error_after` (an `error` event mid-stream), `drop_after`, `end_after` and
`stall_after`.
`raw_tool_use(name, raw_json)` streams a tool input verbatim, valid JSON or not. A refusal
carries `stop_details` (default `REFUSAL`, category "cyber") in message_delta. A text block's
`citations` come as `citations_delta`s, a `server_tool_use` input as `input_json_delta`s; any
other block (redacted_thinking, web_search_tool_result, ...) whole in content_block_start.

With `auto_cache=True`, usage not scripted is computed from the request like the real prompt
cache: tokens ~ JSON bytes / 4 per block; the longest prefix (ending at a `cache_control`
breakpoint of an earlier request, looked up to 20 blocks before each breakpoint) is a cache
read, the rest up to the last breakpoint a cache write, the remainder plain input.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakeserver import FakeHandler, FakeServer

Block = dict[str, Any]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
LOOKBACK = 20  # blocks the real cache looks back from a breakpoint for an earlier entry
RAW_INPUT = "_raw_input"  # a tool_use key (never sent as such): the input_json_delta text
REFUSAL = {"type": "refusal", "category": "cyber", "explanation": "This could enable malware."}


def text(value: str) -> Block:
    """A text content block."""
    return {"type": "text", "text": value}


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> Block:
    """A tool_use content block; an id is made up when not given."""
    block: Block = {"type": "tool_use", "name": name, "input": input}
    if id is not None:
        block["id"] = id
    return block


def raw_tool_use(name: str, raw_json: str, id: str | None = None) -> Block:
    """A tool_use block whose input is streamed as `raw_json` verbatim, valid JSON or not
    (a lone surrogate escape, a cut-off object, an array)."""
    block = tool_use(name, {}, id)
    block[RAW_INPUT] = raw_json
    return block


def thinking(value: str, signature: str = "sig") -> Block:
    """A thinking content block."""
    return {"type": "thinking", "thinking": value, "signature": signature}


@dataclass
class Message:
    """A successful reply. `stop_reason` defaults to tool_use if a block is one, else end_turn.

    Mid-stream failures (streaming only), after N SSE events have been sent: `error_after`
    sends an `error` event of `error_type`; `drop_after` closes the socket; `end_after` ends
    the body cleanly (no error, no message_stop: a proxy cutting it short); `stall_after`
    waits `stall` seconds (None: until released) and then carries on.
    """

    content: list[Block] | str
    stop_reason: str | None = None
    # Sent in message_delta (and the message); default on a refusal: REFUSAL.
    stop_details: dict[str, Any] | None = None
    usage: dict[str, int] | None = None  # overrides the computed counts key by key
    # The usage message_delta carries (running totals; default: all of `usage`). The real API
    # may leave out counts that did not change since message_start.
    delta_usage: dict[str, int] | None = None
    model: str | None = None  # default: the requested model
    chunk_delay: float = 0.0  # seconds between SSE events
    error_after: int | None = None
    error_type: str = "overloaded_error"
    drop_after: int | None = None
    end_after: int | None = None
    stall_after: int | None = None
    stall: float | None = None


@dataclass
class HTTPError:
    """An error status with the API's JSON error body."""

    status: int
    error_type: str | None = None  # default from the status
    message: str = "injected failure"
    retry_after: float | None = None  # `retry-after` header, seconds
    retry_after_ms: int | None = None  # `retry-after-ms` header
    headers: dict[str, str] = field(default_factory=dict)


def usage_limit(resets_at: float, claim: str = "five_hour") -> HTTPError:
    """A subscription's usage limit, as the API reports it to Claude Code: 429 with the
    unified rate-limit headers (status rejected, the reset time in epoch seconds)."""
    reset = str(int(resets_at))
    short = {"five_hour": "5h", "seven_day": "7d"}.get(claim, claim)
    headers = {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": reset,
        "anthropic-ratelimit-unified-representative-claim": claim,
        f"anthropic-ratelimit-unified-{short}-status": "rejected",
        f"anthropic-ratelimit-unified-{short}-reset": reset,
    }
    return HTTPError(429, message="usage limit reached", headers=headers)


@dataclass
class Stall:
    """Send nothing for `seconds` (None: until `release()` or `stop()`), then `then`."""

    seconds: float | None = None
    then: Reply | None = None  # None: close the connection


@dataclass
class Drop:
    """Close the connection without sending a response."""


Reply = Message | HTTPError | Stall | Drop
Responder = Callable[["Recorded"], Reply]


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any
    at: float  # time.monotonic() on arrival

    @property
    def stream(self) -> bool:
        return bool(isinstance(self.json, dict) and self.json.get("stream"))


class FakeAPI(FakeServer):
    """The fake Messages API; use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        *,
        default: Reply | None = None,
        responder: Responder | None = None,
        auto_cache: bool = False,
        min_cache_tokens: int = 0,
        api_key: str | None = None,
        ping: bool = True,
    ) -> None:
        super().__init__(default=default, responder=responder)
        self.auto_cache = auto_cache
        self.min_cache_tokens = min_cache_tokens
        self.api_key = api_key  # if set, other keys get 401
        self.ping = ping
        self.usages: list[dict[str, int]] = []  # the usage each message reply reported
        self._cache: set[str] = set()

    @property
    def bodies(self) -> list[Any]:
        """The JSON bodies of the requests so far."""
        return [r.json for r in self.requests]

    # --- request handling (server threads) -------------------------------------------------

    def unscripted(self, n: int) -> Reply:
        return HTTPError(400, message=f"fakeapi: no reply scripted for request #{n}")

    def usage_for(
        self, body: dict[str, Any], reply: Message, content: list[Block]
    ) -> dict[str, int]:
        """Usage of one message reply: scripted counts over computed ones."""
        out_tokens = max(1, len(json.dumps(content)) // 4)
        if self.auto_cache:
            computed = self._cache_usage(body)
        else:
            computed = {"input_tokens": _tokens(body), "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0}  # fmt: skip
        usage = {**computed, "output_tokens": out_tokens, **(reply.usage or {})}
        with self.lock:
            self.usages.append(usage)
        return usage

    def _cache_usage(self, body: dict[str, Any]) -> dict[str, int]:
        blocks = _prompt_blocks(body)
        hashes, tokens, digest = [], [], hashlib.sha256()
        for canon, _ in blocks:
            digest.update(canon.encode())
            hashes.append(digest.copy().hexdigest())
            tokens.append(max(1, len(canon) // 4))
        prefix = list(itertools.accumulate(tokens))
        marks = [i for i, (_, mark) in enumerate(blocks) if mark]
        marks = [i for i in marks if prefix[i] >= self.min_cache_tokens]
        if not marks:
            return {"input_tokens": sum(tokens), "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0}  # fmt: skip
        with self.lock:
            candidates = {j for m in marks for j in range(max(0, m - LOOKBACK), m + 1)}
            hits = [j for j in candidates if hashes[j] in self._cache]
            self._cache.update(hashes[m] for m in marks)
        hit = max(hits, default=-1)
        read = prefix[hit] if hit >= 0 else 0
        last = marks[-1]
        write = prefix[last] - read if hit < last else 0
        return {
            "input_tokens": prefix[-1] - read - write,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
        }


def _strip_cache_control(block: Any) -> Any:
    if isinstance(block, dict):
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _prompt_blocks(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """The request's prompt in cache order (tools, system, messages) as (canonical JSON,
    has a breakpoint) per block; a message's role is part of its blocks."""
    out: list[tuple[str, bool]] = []
    for tool in body.get("tools") or []:
        out.append(
            (json.dumps(_strip_cache_control(tool), sort_keys=True), "cache_control" in tool)
        )
    system = body.get("system") or []
    for block in [text(system)] if isinstance(system, str) else system:
        out.append(
            (json.dumps(_strip_cache_control(block), sort_keys=True), "cache_control" in block)
        )
    for message in body.get("messages") or []:
        content = message.get("content")
        for block in [text(content)] if isinstance(content, str) else content or []:
            canon = json.dumps([message.get("role"), _strip_cache_control(block)], sort_keys=True)
            out.append((canon, isinstance(block, dict) and "cache_control" in block))
    return out


def _tokens(body: dict[str, Any]) -> int:
    return max(1, sum(len(canon) // 4 for canon, _ in _prompt_blocks(body)))


def _blocks(reply: Message, api: FakeAPI) -> list[Block]:
    content = [text(reply.content)] if isinstance(reply.content, str) else reply.content
    blocks = []
    for block in content:
        block = dict(block)
        if block.get("type") == "tool_use" and "id" not in block:
            block["id"] = api.new_id("toolu")
        blocks.append(block)
    return blocks


def _stop_reason(reply: Message, content: list[Block]) -> str:
    if reply.stop_reason:
        return reply.stop_reason
    return "tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn"


def _sse_events(
    api: FakeAPI, body: dict[str, Any], reply: Message
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The SSE events of a streamed message reply, and the message itself."""
    content = _blocks(reply, api)
    usage = api.usage_for(body, reply, content)
    message = {
        "id": api.new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": reply.model or body.get("model", "claude-fake"),
        "content": content,
        "stop_reason": _stop_reason(reply, content),
        "stop_sequence": None,
        "stop_details": reply.stop_details,
        "usage": usage,
    }
    if message["stop_reason"] == "refusal" and reply.stop_details is None:
        message["stop_details"] = REFUSAL
    start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": start})]
    if api.ping:
        events.append(("ping", {}))
    for index, block in enumerate(content):
        events += _block_events(index, block)
    message["content"] = [{k: v for k, v in b.items() if k != RAW_INPUT} for b in content]
    delta = {key: message[key] for key in ("stop_reason", "stop_sequence", "stop_details")}
    delta_usage = usage if reply.delta_usage is None else reply.delta_usage
    events.append(("message_delta", {"delta": delta, "usage": delta_usage}))
    events.append(("message_stop", {}))
    return [(name, {"type": name, **data}) for name, data in events], message


def _block_events(index: int, block: Block) -> list[tuple[str, dict[str, Any]]]:
    kind = block.get("type")
    start: Block = block
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start, value = {"type": "text", "text": ""}, str(block["text"])
        pieces = [value[i : i + 16] for i in range(0, len(value), 16)] or [""]
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
        if block.get("citations"):  # each citation precedes the text it supports
            start["citations"] = []
            cited = [{"type": "citations_delta", "citation": c} for c in block["citations"]]
            deltas = cited + deltas
    elif kind in ("tool_use", "server_tool_use"):
        start = {k: v for k, v in block.items() if k != RAW_INPUT} | {"input": {}}
        raw = block[RAW_INPUT] if RAW_INPUT in block else json.dumps(block.get("input") or {})
        pieces = [""] + [raw[i : i + 7] for i in range(0, len(raw), 7)]  # the API starts with ""
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                  {"type": "signature_delta", "signature": block.get("signature", "")}]  # fmt: skip
    events: list[tuple[str, dict[str, Any]]] = [
        ("content_block_start", {"index": index, "content_block": start})
    ]
    events += [("content_block_delta", {"index": index, "delta": d}) for d in deltas]
    events.append(("content_block_stop", {"index": index}))
    return events


class _Handler(FakeHandler):
    @property
    def api(self) -> FakeAPI:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def extra_headers(self) -> dict[str, str]:
        return {"request-id": self.api.new_id("req")}

    def do_GET(self) -> None:
        self._json(404, _error_body("not_found_error", f"fakeapi: no route {self.path}"))

    def do_POST(self) -> None:
        raw, data, headers = self._read()
        req = Recorded("POST", self.path, headers, raw, data, time.monotonic())
        if self.path.split("?")[0] != "/v1/messages":
            self.api.requests.append(req)
            self._json(404, _error_body("not_found_error", f"fakeapi: no route {self.path}"))
            return
        key = self.api.api_key
        if key is not None and key not in (headers.get("x-api-key"), _bearer(headers)):
            self.api.requests.append(req)
            self._json(401, _error_body("authentication_error", "invalid x-api-key"))
            return
        self._answer(req, self.api.next_reply(req))

    def _answer(self, req: Recorded, reply: Reply | None) -> None:
        if isinstance(reply, Stall):
            self._wait(reply.seconds)
            return self._answer(req, reply.then)
        if reply is None or isinstance(reply, Drop):
            return self._drop()
        if isinstance(reply, HTTPError):
            error_type = reply.error_type or ERROR_TYPES.get(reply.status, "api_error")
            headers = dict(reply.headers)
            if reply.retry_after is not None:
                headers["retry-after"] = f"{reply.retry_after:g}"
            if reply.retry_after_ms is not None:
                headers["retry-after-ms"] = str(reply.retry_after_ms)
            return self._json(reply.status, _error_body(error_type, reply.message), headers)
        body = req.json if isinstance(req.json, dict) else {}
        events, message = _sse_events(self.api, body, reply)
        if not req.stream:
            return self._json(200, message)
        self._stream(events, reply)

    def _stream(self, events: list[tuple[str, dict[str, Any]]], reply: Message) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self.api.new_id("req"))
        self.end_headers()
        try:
            for n, (name, data) in enumerate(events):
                if n == reply.error_after:
                    error = _error_body(reply.error_type, "injected stream error")
                    self._chunk(f"event: error\ndata: {json.dumps(error)}\n\n")
                    break
                if n == reply.drop_after:
                    return self._drop()
                if n == reply.end_after:
                    break
                if n == reply.stall_after:
                    self._wait(reply.stall)
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                self._chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n")
            self._chunk("")
        except OSError:  # the client went away (e.g. it timed out during a stall)
            self.close_connection = True

    def _wait(self, seconds: float | None) -> None:
        self.api.released.wait(seconds)


FakeAPI.handler = _Handler


def _bearer(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}

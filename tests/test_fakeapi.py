"""The local Messages API server itself: wire format, scripted replies, failures, cache usage."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.fakeapi import (
    REFUSAL,
    Drop,
    FakeAPI,
    HTTPError,
    Message,
    Recorded,
    Stall,
    raw_tool_use,
    text,
    tool_use,
)

SYSTEM = [{"type": "text", "text": "system prompt " * 50, "cache_control": {"type": "ephemeral"}}]


def body(messages: list[dict[str, Any]] | None = None, stream: bool = True) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "max_tokens": 100,
        "stream": stream,
        "system": SYSTEM,
        "messages": messages or [{"role": "user", "content": "hi"}],
    }


def post(api: FakeAPI, data: dict[str, Any], timeout: float = 5) -> httpx.Response:
    return httpx.post(f"{api.url}/v1/messages", json=data, timeout=timeout)


def sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs, checking every event has exactly an event: and a data: line."""
    out = []
    for chunk in raw.strip().split("\n\n"):
        name_line, data_line = chunk.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        name = name_line[7:]
        assert data["type"] == name
        out.append((name, data))
    return out


def test_stream_is_sse_exactly_as_the_api_sends_it() -> None:
    with FakeAPI() as api:
        api.add(
            Message(
                [text("Hello, world! " * 3), tool_use("bash", {"command": "ls -la /tmp"})],
                usage={"input_tokens": 11, "cache_read_input_tokens": 22, "output_tokens": 33},
            )
        )
        response = post(api, body())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["request-id"].startswith("req_")
    events = sse(response.text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 11 and start["usage"]["cache_read_input_tokens"] == 22

    blocks: dict[int, dict[str, Any]] = {}
    json_parts: dict[int, list[str]] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta"
                json_parts.setdefault(data["index"], []).append(delta["partial_json"])
    assert blocks[0] == text("Hello, world! " * 3)
    assert blocks[1]["name"] == "bash" and blocks[1]["id"].startswith("toolu_")
    assert len(json_parts[1]) > 2 and json_parts[1][0] == ""
    assert json.loads("".join(json_parts[1])) == {"command": "ls -la /tmp"}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 33


def test_raw_tool_input_is_streamed_verbatim_and_never_leaks_into_the_message() -> None:
    raw = '{"command": "echo \\ud800'
    with FakeAPI() as api:
        api.add(Message([raw_tool_use("bash", raw, id="toolu_x")]))
        events = sse(post(api, body()).text)
        api.add(Message([raw_tool_use("bash", raw, id="toolu_x")]))
        message = post(api, body(stream=False)).json()
    parts = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert "".join(parts) == raw
    assert message["content"] == [
        {"type": "tool_use", "name": "bash", "input": {}, "id": "toolu_x"}
    ]


def test_citations_server_tool_input_and_other_blocks_stream_as_the_api_sends_them() -> None:
    cite = {"type": "char_location", "cited_text": "x", "document_index": 0,
            "document_title": None, "start_char_index": 0, "end_char_index": 1}  # fmt: skip
    search = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
              "input": {"query": "q"}}  # fmt: skip
    redacted = {"type": "redacted_thinking", "data": "ENC"}
    with FakeAPI() as api:
        api.add(Message([search, redacted, {"type": "text", "text": "Yes.", "citations": [cite]}]))
        events = sse(post(api, body()).text)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    deltas = [(d["index"], d["delta"]) for n, d in events if n == "content_block_delta"]
    assert starts == [
        {**search, "input": {}},
        redacted,
        {"type": "text", "text": "", "citations": []},
    ]
    partial = "".join(d["partial_json"] for i, d in deltas if i == 0)
    assert json.loads(partial) == search["input"] and not [d for i, d in deltas if i == 1]
    assert [d["type"] for i, d in deltas if i == 2] == ["citations_delta", "text_delta"]
    assert deltas[-2][1]["citation"] == cite


def test_a_refusal_sends_stop_details() -> None:
    details = {"type": "refusal", "category": "bio", "explanation": None}
    with FakeAPI() as api:
        api.add(Message("No.", stop_reason="refusal"), Message("No.", stop_reason="refusal",
                                                               stop_details=details))  # fmt: skip
        api.add(Message("Yes."))
        deltas = [sse(post(api, body()).text)[-2][1]["delta"] for _ in range(3)]
    assert [d["stop_details"] for d in deltas] == [REFUSAL, details, None]


def test_non_streaming_requests_get_the_json_message() -> None:
    with FakeAPI(default=Message("plain", stop_reason="max_tokens")) as api:
        data = post(api, body(stream=False)).json()
    assert data["type"] == "message" and data["role"] == "assistant"
    assert data["content"] == [text("plain")] and data["stop_reason"] == "max_tokens"
    assert data["model"] == "claude-test" and data["usage"]["output_tokens"] >= 1


def test_errors_carry_the_api_error_body_and_retry_headers() -> None:
    with FakeAPI() as api:
        api.add(HTTPError(429, retry_after=3), HTTPError(529, retry_after_ms=250), HTTPError(413))
        first, second, third = (post(api, body()) for _ in range(3))
    assert first.status_code == 429 and first.headers["retry-after"] == "3"
    assert first.json()["error"]["type"] == "rate_limit_error"
    assert second.status_code == 529 and second.headers["retry-after-ms"] == "250"
    assert second.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "injected failure"},
    }
    assert third.json()["error"]["type"] == "request_too_large"


def test_mid_stream_error_event() -> None:
    with FakeAPI(default=Message("text", error_after=2)) as api:
        events = sse(post(api, body()).text)
    assert [n for n, _ in events] == ["message_start", "ping", "error"]
    assert events[-1][1]["error"]["type"] == "overloaded_error"


def test_a_stream_ended_early_and_a_partial_message_delta_usage() -> None:
    with FakeAPI() as api:
        api.add(Message("text", end_after=3), Message("t", delta_usage={"output_tokens": 9}))
        short = sse(post(api, body()).text)  # a complete chunked body: no error
        delta = sse(post(api, body()).text)[-2][1]
    assert [n for n, _ in short] == ["message_start", "ping", "content_block_start"]
    assert delta["type"] == "message_delta" and delta["usage"] == {"output_tokens": 9}


def test_dropped_connections() -> None:
    with FakeAPI() as api:
        api.add(Drop(), Message("some text", drop_after=3))
        with pytest.raises(httpx.RemoteProtocolError):
            post(api, body())
        with pytest.raises(httpx.RemoteProtocolError):  # an incomplete chunked body
            post(api, body())


def test_stall_then_reply_and_hang_until_stopped() -> None:
    api = FakeAPI().start()
    api.add(Stall(0.3, then=Message("late")), Stall(None))
    started = time.monotonic()
    assert "late" in post(api, body()).text
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        post(api, body(), timeout=0.3)
    started = time.monotonic()
    api.stop()  # releases the hanging request
    assert time.monotonic() - started < 30  # not forever


def test_requests_are_logged_and_replies_come_from_queue_responder_default() -> None:
    seen: list[Recorded] = []

    def responder(req: Recorded) -> Message:
        seen.append(req)
        return Message(f"echo {len(req.json['messages'])}")

    with FakeAPI(responder=responder) as api:
        api.add(Message("queued"))
        replies = [post(api, body(stream=False)).json()["content"][0]["text"] for _ in range(2)]
        api.responder = None
        missing = post(api, body())
        api.default = Message("fallback")
        fallback = post(api, body(stream=False)).json()["content"][0]["text"]
    assert replies == ["queued", "echo 1"] and fallback == "fallback"
    assert missing.status_code == 400 and "no reply scripted" in missing.text
    assert len(api.requests) == 4 and seen == [api.requests[1]]
    assert api.requests[0].json == body(stream=False) and api.requests[0].path == "/v1/messages"
    assert api.requests[0].headers["content-type"] == "application/json"


def test_api_key_is_checked_when_set() -> None:
    with FakeAPI(api_key="right", default=Message("ok")) as api:
        url = f"{api.url}/v1/messages"
        wrong = httpx.post(url, json=body(), headers={"x-api-key": "wrong"})
        bearer = httpx.post(url, json=body(), headers={"authorization": "Bearer right"})
        header = httpx.post(url, json=body(), headers={"x-api-key": "right"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    assert bearer.status_code == 200 and header.status_code == 200


def usage_of(api: FakeAPI, messages: list[dict[str, Any]]) -> dict[str, int]:
    post(api, body(messages, stream=False)).raise_for_status()
    return api.usages[-1]


def marked(role: str, value: str) -> dict[str, Any]:
    block = {**text(value), "cache_control": {"type": "ephemeral"}}
    return {"role": role, "content": [block]}


def test_auto_cache_writes_then_reads_prefixes() -> None:
    with FakeAPI(auto_cache=True, default=Message("ok")) as api:
        first = usage_of(api, [marked("user", "question one")])
        again = usage_of(api, [marked("user", "question one")])
        longer = usage_of(
            api,
            [
                {"role": "user", "content": "question one"},  # no longer marked: looked back
                {"role": "assistant", "content": "answer"},
                marked("user", "question two"),
            ],
        )
        other = usage_of(api, [marked("user", "another question entirely")])
    prompt = first["cache_creation_input_tokens"]
    assert first["cache_read_input_tokens"] == 0 and prompt > 100
    assert again["cache_read_input_tokens"] == prompt and again["cache_creation_input_tokens"] == 0
    assert longer["cache_read_input_tokens"] == prompt
    assert 0 < longer["cache_creation_input_tokens"] < prompt
    # the system prompt breakpoint is shared; the new question is written
    system_only = other["cache_read_input_tokens"]
    assert 0 < system_only < prompt and other["cache_creation_input_tokens"] > 0


def test_auto_cache_without_breakpoints_or_below_the_minimum_is_plain_input() -> None:
    with FakeAPI(auto_cache=True, min_cache_tokens=10_000, default=Message("ok")) as api:
        small = [usage_of(api, [marked("user", "q")]) for _ in range(2)]
    for usage in small:
        assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0
        assert usage["input_tokens"] > 100

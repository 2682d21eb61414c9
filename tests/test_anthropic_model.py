"""AnthropicModel through the real `anthropic` SDK over HTTP to the local FakeAPI server:
streaming, usage, stop reasons, retries and failures, prompt caching; and the price table."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ralph.config import DEFAULT_MODEL
from ralph.errors import UsageError
from ralph.models.anthropic import AnthropicModel, check_credentials, with_moving_breakpoint
from ralph.models.base import ModelError, ModelRequest, Pricing, StreamEvent, Usage
from ralph.models.pricing import builtin_prices, lookup
from tests.fakeapi import (
    REFUSAL,
    Drop,
    FakeAPI,
    HTTPError,
    Message,
    Stall,
    raw_tool_use,
    text,
    thinking,
    tool_use,
)
from tests.helpers import HANG, interrupt_when

KEY = "sk-ant-test-key"
MODEL = "claude-sonnet-5-5"
TOOLS = [
    {"type": "bash_20250124", "name": "bash"},
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
]
USAGE = {
    "input_tokens": 120,
    "output_tokens": 35,
    "cache_creation_input_tokens": 900,
    "cache_read_input_tokens": 4000,
}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    """A FakeAPI that only accepts KEY, with the SDK pointed at it through the environment."""
    with FakeAPI(api_key=KEY) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        yield server


def make_model(retry_window: float = 10.0, timeout: float = 5.0) -> AnthropicModel:
    return AnthropicModel(
        MODEL, retry_window=retry_window, timeout=timeout, backoff_base=0.02, backoff_max=0.1
    )


def make_request(messages: list[dict[str, Any]] | None = None) -> ModelRequest:
    return ModelRequest(
        system="You harden repositories. " * 20,
        messages=messages or [{"role": "user", "content": "Fix the bug in app.py."}],
        tools=TOOLS,
        max_tokens=2000,
    )


def call(
    model: AnthropicModel, request: ModelRequest | None = None
) -> tuple[Any, list[StreamEvent]]:
    events: list[StreamEvent] = []
    response = model.complete(request or make_request(), events.append)
    return response, events


# --- streaming, content, usage --------------------------------------------------------------


def test_streams_text_and_tool_use_with_split_json_input(api: FakeAPI) -> None:
    tool_input = {"command": "ls -la && python -m pytest -q tests/", "restart": False}
    api.add(
        Message(
            [text("Let me look at the code first."), tool_use("bash", tool_input, id="toolu_1")],
            usage=USAGE,
        )
    )
    response, events = call(make_model())

    assert response.content == [
        {"type": "text", "text": "Let me look at the code first."},
        {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": tool_input},
    ]
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(**USAGE)
    assert response.model == MODEL and response.retries == 0
    assert response.request_id and response.request_id.startswith("req_")
    assert response.latency_s > 0
    texts = [e.data for e in events if e.kind == "text"]
    partial = [e.data for e in events if e.kind == "tool_input"]
    assert "".join(texts) == "Let me look at the code first." and len(texts) > 1
    assert len(partial) > 3 and json.loads("".join(partial)) == tool_input
    (sent,) = api.requests
    assert sent.json["stream"] is True and sent.json["model"] == MODEL
    assert "temperature" not in sent.json


def test_thinking_blocks_are_kept_as_dicts(api: FakeAPI) -> None:
    api.add(Message([thinking("Consider the input.", "sig-1"), text("Done.")]))
    response, _ = call(make_model())
    assert response.content == [
        {"type": "thinking", "thinking": "Consider the input.", "signature": "sig-1"},
        {"type": "text", "text": "Done."},
    ]
    assert response.text == "Done."


def test_every_kind_of_block_goes_back_exactly_as_the_api_sent_it(api: FakeAPI) -> None:
    # Nulls the API sent stay (a citation's title is required back, even when null), and
    # nothing of the SDK's own (parsed_output, a JSON buffer) is added.
    citation = {"type": "web_search_result_location", "cited_text": "Loops.", "title": None,
                "url": "https://example.com/a", "encrypted_index": "EI1"}  # fmt: skip
    search = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
              "input": {"query": "ralph loop"}}  # fmt: skip
    found = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
             "content": [{"type": "web_search_result", "url": "https://example.com/a",
                          "title": "A", "encrypted_content": "EC1", "page_age": None}]}  # fmt: skip
    call_ = {**tool_use("bash", {"command": "ls"}, id="toolu_1"), "caller": {"type": "direct"}}
    content = [thinking("Plan it.", "sig-1"), {"type": "redacted_thinking", "data": "ENC"},
               search, found, {"type": "text", "text": "It loops.", "citations": [citation]},
               tool_use("bash", {}, id="toolu_0"), call_]  # fmt: skip
    api.add(Message(content), Message("Done."))
    model = make_model()
    first = model.complete(make_request())
    assert first.content == content and not first.invalid_inputs
    results = [{"type": "tool_result", "tool_use_id": b["id"], "content": "ok"}
               for b in first.tool_uses]  # fmt: skip
    messages = [{"role": "user", "content": "Go."}, {"role": "assistant", "content": first.content},
                {"role": "user", "content": results}]  # fmt: skip
    model.complete(make_request(messages))
    sent = api.requests[1].json["messages"][1]["content"]
    assert [{k: v for k, v in b.items() if k != "cache_control"} for b in sent] == content


def test_usage_of_several_calls_sums_to_what_the_server_reported(api: FakeAPI) -> None:
    api.add(
        Message("one", usage=USAGE), Message("two"), Message("three", usage={"input_tokens": 7})
    )
    model = make_model()
    total = Usage()
    for _ in range(3):
        total = total + model.complete(make_request()).usage
    expected = Usage()
    for reported in api.usages:
        expected = expected + Usage(**reported)
    assert total == expected and total.cache_read_input_tokens == 4000


def test_message_delta_counts_are_running_totals_that_replace(api: FakeAPI) -> None:
    # Counts left out of message_delta keep their message_start value; those in it replace.
    api.add(Message("a", usage=USAGE, delta_usage={"output_tokens": 35}))
    api.add(Message("b", usage=USAGE, delta_usage={**USAGE, "input_tokens": 500}))
    model = make_model()
    assert model.complete(make_request()).usage == Usage(**USAGE)
    assert model.complete(make_request()).usage == Usage(**{**USAGE, "input_tokens": 500})


@pytest.mark.parametrize(
    "stop_reason",
    [
        "end_turn",
        "tool_use",
        "max_tokens",
        "stop_sequence",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    ],
)
def test_every_stop_reason_passes_through(api: FakeAPI, stop_reason: str) -> None:
    api.add(Message("partial answer", stop_reason=stop_reason))
    response, _ = call(make_model())
    assert response.stop_reason == stop_reason
    assert response.text == "partial answer"


def test_a_refusal_carries_its_category_and_explanation(api: FakeAPI) -> None:
    api.add(Message("I can't help with that.", stop_reason="refusal"))
    response, _ = call(make_model())
    assert response.stop_reason == "refusal"
    assert response.stop_details == REFUSAL and response.stop_details["category"] == "cyber"
    api.add(Message("Done."))
    assert call(make_model())[0].stop_details is None


BAD_INPUTS = {
    "lone surrogate": '{"command": "echo \\ud800"}',
    "cut off": '{"command": "ls',
    "not json": '{"command": ls}',
    "an array": '["ls"]',
}


@pytest.mark.parametrize("raw", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_tool_input_json_is_asked_for_again_once_then_reported(api: FakeAPI, raw: str) -> None:
    bad = Message([text("Run it."), raw_tool_use("bash", raw, id="toolu_bad"),
                   tool_use("bash", {"command": "pwd"}, id="toolu_ok")])  # fmt: skip
    api.add(bad, bad)
    response, events = call(make_model())
    assert len(api.requests) == 2 and response.retries == 1
    assert api.requests[0].body == api.requests[1].body  # asked again with the same request
    assert [e.kind for e in events].count("retry") == 1
    assert response.content[1:] == [
        {"type": "tool_use", "id": "toolu_bad", "name": "bash", "input": {}},
        {"type": "tool_use", "id": "toolu_ok", "name": "bash", "input": {"command": "pwd"}},
    ]
    assert set(response.invalid_inputs) == {"toolu_bad"}
    assert "not" in response.invalid_inputs["toolu_bad"]
    # Both replies were billed: the one thrown away counts too.
    assert response.usage == Usage(**api.usages[0]) + Usage(**api.usages[1])


def test_bad_tool_input_then_a_good_reply_is_the_good_reply(api: FakeAPI) -> None:
    api.add(Message([raw_tool_use("bash", '{"command": "ls"', id="toolu_1")]))
    api.add(Message([tool_use("bash", {"command": "ls"}, id="toolu_2")]))
    response, _ = call(make_model())
    assert response.retries == 1 and not response.invalid_inputs
    assert response.tool_uses == [
        {"type": "tool_use", "id": "toolu_2", "name": "bash", "input": {"command": "ls"}}
    ]


def test_a_tool_input_cut_off_at_max_tokens_is_not_asked_for_again(api: FakeAPI) -> None:
    cut = raw_tool_use("bash", '{"command": "cat > big.py <<EOF', id="toolu_cut")
    api.add(Message([text("Writing it."), cut], stop_reason="max_tokens"))
    response, _ = call(make_model())
    assert len(api.requests) == 1 and response.retries == 0
    assert response.stop_reason == "max_tokens" and response.text == "Writing it."


def test_bad_tool_input_with_no_retry_window_is_reported_not_a_failed_call(
    api: FakeAPI,
) -> None:
    # With no time left to ask again, the billed reply in hand is the answer: its bad call
    # is reported for an error result, not turned into a failed call that loses its usage.
    api.add(Message([text("Run it."), raw_tool_use("bash", '{"command": ls}', id="toolu_bad")]))
    response = make_model(retry_window=0).complete(make_request())
    assert len(api.requests) == 1 and response.retries == 0
    assert set(response.invalid_inputs) == {"toolu_bad"} and response.text == "Run it."
    assert response.usage == Usage(**api.usages[0])


def test_bad_tool_input_then_only_overloads_is_the_bad_reply_counted_once(api: FakeAPI) -> None:
    api.add(Message([raw_tool_use("bash", '["ls"]', id="toolu_bad")]))
    api.default = HTTPError(529)
    response = make_model(retry_window=0.4).complete(make_request())
    # At least one overload (how many fit in the window depends on the machine's load).
    assert len(api.requests) >= 2 and response.retries == len(api.requests) - 1
    assert set(response.invalid_inputs) == {"toolu_bad"}
    assert response.usage == Usage(**api.usages[0]) and len(api.usages) == 1


def test_a_tool_without_parameters_gets_an_empty_object(api: FakeAPI) -> None:
    api.add(Message([raw_tool_use("bash", "", id="toolu_1")]))
    response, _ = call(make_model())
    assert response.tool_uses[0]["input"] == {} and not response.invalid_inputs
    assert len(api.requests) == 1


# --- retries ---------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says_and_reports_it(api: FakeAPI) -> None:
    api.add(HTTPError(429, retry_after=1), Message("ok"))
    response, events = call(make_model())
    assert response.text == "ok" and response.retries == 1
    first, second = api.requests
    assert second.at - first.at >= 1.0  # no more than asked: the planned wait below
    (retry,) = [e for e in events if e.kind == "retry"]
    assert retry.data == pytest.approx(1.0) and "429" in retry.reason


def test_retry_after_ms_is_honoured(api: FakeAPI) -> None:
    api.add(HTTPError(529, retry_after_ms=400), Message("ok"))
    response, events = call(make_model())
    first, second = api.requests
    assert second.at - first.at >= 0.4  # no more than asked: the planned wait below
    assert [e.data for e in events if e.kind == "retry"] == [pytest.approx(0.4)]
    assert response.retries == 1


def test_529_storm_then_success(api: FakeAPI) -> None:
    api.add(*[HTTPError(529, message="Overloaded") for _ in range(6)], Message("finally"))
    response, events = call(make_model())
    assert response.text == "finally" and response.retries == 6
    assert len(api.requests) == 7
    retries = [e for e in events if e.kind == "retry"]
    assert len(retries) == 6 and all("529 overloaded_error" in e.reason for e in retries)


@pytest.mark.parametrize(
    "failure",
    [
        HTTPError(500),
        HTTPError(503),
        Drop(),
        Message("half of it", error_after=4),
        Message("half of it", drop_after=4),
    ],
    ids=["500", "503", "dropped-connection", "stream-error-event", "dropped-mid-stream"],
)
def test_transient_failure_then_success(api: FakeAPI, failure: Any) -> None:
    api.add(failure, Message("recovered"))
    response, events = call(make_model())
    assert response.text == "recovered" and response.retries == 1
    assert len(api.requests) == 2
    assert [e.kind for e in events].count("retry") == 1


def test_a_stream_cut_short_is_retried_unless_only_message_stop_is_missing(
    api: FakeAPI,
) -> None:
    # Events of Message("half"): message_start, ping, block start/delta/stop, message_delta,
    # message_stop.
    api.add(Message("half", end_after=4), Message("half", end_after=5), Message("ok"))
    response, events = call(make_model())
    assert response.text == "ok" and response.retries == 2
    assert [e.reason for e in events if e.kind == "retry"] == [
        "the stream ended before message_stop"
    ] * 2
    api.add(Message("all but the stop", end_after=6))
    response, _ = call(make_model())
    assert response.text == "all but the stop" and response.stop_reason == "end_turn"
    assert response.retries == 0 and response.usage == Usage(**api.usages[-1])


@pytest.mark.parametrize(
    "stall",
    [Stall(60, then=Message("late")), Message("slow", stall_after=3, stall=60)],
    ids=["before-response", "mid-stream"],
)
def test_stall_past_the_timeout_is_retried(api: FakeAPI, stall: Any) -> None:
    api.add(stall, Message("fresh"))
    response, events = call(make_model(timeout=0.5))
    assert response.text == "fresh" and response.retries == 1
    first, second = api.requests
    assert second.at - first.at < 30  # not the 60 s stall
    (retry,) = [e for e in events if e.kind == "retry"]
    assert "0.5 s" in retry.reason


def test_a_retry_resends_the_identical_body(api: FakeAPI) -> None:
    api.add(HTTPError(529), Drop(), Message("x", error_after=2), Message("ok"))
    call(make_model())
    bodies = [r.body for r in api.requests]
    assert len(bodies) == 4 and len(set(bodies)) == 1


def test_retry_window_exhausted_is_a_non_fatal_error(api: FakeAPI) -> None:
    api.default = HTTPError(529, message="Overloaded")
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        call(make_model(retry_window=0.6))
    elapsed = time.monotonic() - started
    assert not caught.value.fatal and caught.value.status == 529
    assert "retry window" in caught.value.message and "\n" not in caught.value.message
    # It stops once the window is spent (a loop without one never would); at least one retry.
    assert 0.6 <= elapsed < 30 and len(api.requests) >= 2


def test_retry_after_is_capped_to_the_remaining_window(api: FakeAPI) -> None:
    api.default = HTTPError(429, retry_after=60)
    events: list[StreamEvent] = []
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        make_model(retry_window=0.5).complete(make_request(), events.append)
    assert time.monotonic() - started < 30  # not the 60 s retry-after
    assert caught.value.status == 429 and not caught.value.fatal
    assert events and all(e.kind == "retry" and e.data <= 0.5 for e in events)


def test_zero_retry_window_never_retries(api: FakeAPI) -> None:
    api.default = HTTPError(529)
    with pytest.raises(ModelError):
        make_model(retry_window=0).complete(make_request())
    assert len(api.requests) == 1


# --- errors that are not retried ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "status", "retried"),
    [
        ("invalid_request_error", 400, False),
        ("billing_error", 402, False),
        ("permission_error", 403, False),
        ("not_found_error", 404, False),
        ("request_too_large", 413, False),
        ("rate_limit_error", 429, True),
        ("api_error", 500, True),
        ("timeout_error", 504, True),
        ("overloaded_error", 529, True),
    ],
)
def test_an_error_event_mid_stream_is_retried_only_when_transient(
    api: FakeAPI, error_type: str, status: int, retried: bool
) -> None:
    api.add(Message("half of it", error_after=4, error_type=error_type), Message("ok"))
    if retried:
        response, _ = call(make_model())
        assert response.text == "ok" and response.retries == 1
        assert len(api.requests) == 2
        return
    with pytest.raises(ModelError) as caught:
        call(make_model())
    assert caught.value.status == status and not caught.value.fatal
    assert error_type in caught.value.message and "stream" in caught.value.message
    assert len(api.requests) == 1


def test_401_is_fatal_with_a_one_line_message(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    with pytest.raises(ModelError) as caught:
        make_model().complete(make_request())
    error = caught.value
    assert error.fatal and error.status == 401
    assert "ANTHROPIC_API_KEY" in error.message and "\n" not in error.message
    assert len(api.requests) == 1


@pytest.mark.parametrize("status", [400, 402, 403, 404, 413])
def test_client_errors_end_the_call_without_retry(api: FakeAPI, status: int) -> None:
    # a retry-after header must not tempt the client into retrying these
    api.add(HTTPError(status, message=f"nope {status}", retry_after=0), Message("never sent"))
    events: list[StreamEvent] = []
    with pytest.raises(ModelError) as caught:
        make_model().complete(make_request(), events.append)
    error = caught.value
    assert not error.fatal and error.status == status
    assert f"nope {status}" in error.message and "\n" not in error.message
    assert len(api.requests) == 1 and not events


def test_interrupted_propagates_at_once_from_a_hung_request(api: FakeAPI) -> None:
    api.add(Stall(None))
    model = make_model(timeout=3600)
    took = interrupt_when(lambda: len(api.requests) == 1, lambda: model.complete(make_request()))
    assert took < HANG  # not the hour's timeout: a bound a loaded machine keeps
    assert len(api.requests) == 1


def test_interrupted_propagates_from_a_retry_wait(api: FakeAPI) -> None:
    api.add(HTTPError(429, retry_after=3600), Message("never"))
    events: list[StreamEvent] = []
    model = make_model(retry_window=7200)
    took = interrupt_when(
        lambda: any(e.kind == "retry" for e in events),
        lambda: model.complete(make_request(), events.append),
    )
    assert took < HANG  # not the hour's retry-after: a bound a loaded machine keeps
    assert len(api.requests) == 1


# --- prompt caching ----------------------------------------------------------------------------


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Fix the bug in app.py."},
        {
            "role": "assistant",
            "content": [
                text("Looking."),
                tool_use("bash", {"command": "cat app.py"}, id="toolu_9"),
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "print(1)"}],
        },
    ]


def test_cache_breakpoints_on_tools_system_and_last_block(api: FakeAPI) -> None:
    api.add(Message("ok"))
    request = make_request(conversation())
    before = copy.deepcopy(request)
    make_model().complete(request)
    assert request == before  # the caller's messages, tools and system are untouched

    body = api.requests[0].json
    ephemeral = {"type": "ephemeral"}
    assert [t.get("cache_control") for t in body["tools"]] == [None, ephemeral]
    assert body["system"] == [{"type": "text", "text": request.system, "cache_control": ephemeral}]
    marked = [
        (i, j)
        for i, m in enumerate(body["messages"])
        for j, b in enumerate(m["content"] if isinstance(m["content"], list) else [])
        if "cache_control" in b
    ]
    # The last block, and the last block of the previous request (the latest earlier user
    # message), whose cache entry a turn of many tool calls would put out of lookback reach.
    assert marked == [(0, 0), (2, 0)]
    assert body["messages"][1] == request.messages[1]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": request.messages[0]["content"], "cache_control": ephemeral}
    ]


def test_the_second_breakpoint_follows_the_previous_request() -> None:
    prompt = {"role": "user", "content": [text("Do it.")]}
    reply = {"role": "assistant", "content": [text("Cut")]}
    go_on = {"role": "user", "content": [text("Continue.")]}
    paused = {"role": "assistant", "content": [text("Searching")]}

    def marks(messages: list[dict[str, Any]]) -> list[int]:
        out = with_moving_breakpoint(messages)
        return [i for i, m in enumerate(out) if "cache_control" in m["content"][-1]]

    assert marks([prompt]) == [0]
    assert marks([prompt, reply, go_on]) == [0, 2]  # after a tool turn or a cut-off reply
    assert marks([prompt, paused]) == [0, 1]  # a paused turn sent back
    assert marks([prompt, reply, go_on, paused]) == [2, 3]


def test_a_string_prompt_becomes_a_cached_text_block() -> None:
    messages = [{"role": "user", "content": "Do it."}]
    out = with_moving_breakpoint(messages)
    assert out == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Do it.", "cache_control": {"type": "ephemeral"}}],
        }
    ]
    assert messages == [{"role": "user", "content": "Do it."}]


def test_the_breakpoint_skips_thinking_and_empty_text() -> None:
    blocks = [text("keep me"), text(""), thinking("hmm")]
    out = with_moving_breakpoint([{"role": "assistant", "content": blocks}])
    assert out[0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in b for b in out[0]["content"][1:])
    assert all("cache_control" not in b for b in blocks)


def test_from_the_second_call_most_input_is_read_from_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeAPI(auto_cache=True, default=Message("ok")) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        model = make_model()
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix the bug."}]
        usages = []
        for turn in range(4):
            response = model.complete(make_request(messages))
            usages.append(response.usage)
            messages = [
                *messages,
                {"role": "assistant", "content": response.content},
                {"role": "user", "content": [text(f"tool output {turn} " * 10)]},
            ]
    first, *later = usages
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens > 0
    for usage in later:
        prompt = usage.input_tokens + usage.cache_creation_input_tokens
        assert usage.cache_read_input_tokens > 2 * prompt


# --- credentials and lazy imports --------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [{}, {"ANTHROPIC_API_KEY": ""}, {"OPENAI_API_KEY": "x"}],
)
def test_missing_credentials_are_a_usage_error(environ: dict[str, str]) -> None:
    with pytest.raises(UsageError) as caught:
        check_credentials(environ)
    assert "ANTHROPIC_API_KEY" in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("name", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_either_credential_is_enough(name: str) -> None:
    check_credentials({name: "secret"})


def test_importing_the_backend_does_not_import_the_sdk() -> None:
    code = (
        "import sys, ralph.models, ralph.models.anthropic, ralph.models.pricing\n"
        "heavy = [m for m in ('anthropic', 'httpx2', 'tenacity') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- pricing -------------------------------------------------------------------------------------


def test_known_model_prices() -> None:
    assert lookup("claude-sonnet-4-6") == Pricing(3.0, 15.0, 3.75, 0.30)
    assert lookup("claude-opus-4-5") == Pricing(5.0, 25.0, 6.25, 0.50)
    assert lookup("claude-haiku-4-5-20251001") == Pricing(1.0, 5.0, 1.25, 0.10)


def test_unknown_models_have_no_price() -> None:
    assert lookup("claude-imaginary-9") is None
    assert lookup("script") is None


def test_overrides_replace_and_extend_the_table() -> None:
    overrides = {
        "claude-sonnet-4-6": {"input": 1.0, "output": 2.0, "cache_write": 3.0, "cache_read": 4.0},
        "my-proxy-model": {"input": 2.0, "output": 8.0},
    }
    assert lookup("claude-sonnet-4-6", overrides) == Pricing(1.0, 2.0, 3.0, 4.0)
    extended = lookup("my-proxy-model", overrides)
    assert extended is not None and (extended.input, extended.output) == (2.0, 8.0)
    assert (extended.cache_write, extended.cache_read) == pytest.approx((2.5, 0.2))
    assert lookup("claude-opus-4-5", overrides) == Pricing(5.0, 25.0, 6.25, 0.50)


def test_cost_of_usage() -> None:
    pricing = lookup("claude-sonnet-4-6")
    assert pricing is not None
    usage = Usage(1_000_000, 100_000, 200_000, 2_000_000)
    assert pricing.cost(usage) == pytest.approx(3.0 + 1.5 + 0.75 + 0.6)


def sdk_model_ids() -> set[str]:
    """The model ids the installed (locked) SDK lists in its ModelParam type."""
    from anthropic.types.model_param import ModelParam

    literal = typing.get_args(ModelParam)[0]
    return set(typing.get_args(literal))


def test_the_default_model_is_one_the_locked_sdk_lists_prices_and_does_not_deprecate() -> None:
    # What users meet without a --model: it must be a current model, with a known cost.
    from anthropic._data import DEPRECATED_MODELS

    assert DEFAULT_MODEL in sdk_model_ids()
    assert DEFAULT_MODEL not in DEPRECATED_MODELS
    assert lookup(DEFAULT_MODEL) is not None


def test_builtin_prices_are_coherent() -> None:
    # Ids the SDK has since dropped stay priced on purpose (an old run's journal still needs
    # its cost), so this checks the table's shape, not upstream's list of the day.
    table = builtin_prices()
    assert table
    for model, p in table.items():
        assert re.fullmatch(r"claude-[a-z]+(-\d+)+", model), model
        assert 0 < p.cache_read < p.input < p.cache_write and p.input < p.output, model

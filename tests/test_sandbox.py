"""The bubblewrap sandbox, with real bwrap: what the agent's commands can and cannot touch."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ralph.config import RunConfig
from ralph.errors import UsageError
from ralph.tools import make_toolset
from ralph.tools import sandbox as sandbox_module
from ralph.tools.bash import BashTool
from ralph.tools.hostview import rustup_home, tool_dirs
from ralph.tools.probe import bwrap_problem, choose_sandbox
from ralph.tools.sandbox import git_paths, hidden_dirs, make_sandbox, secret_files
from tests.helpers import closed_after_test, git, make_repo, run_cli, write_script


def sandboxed(
    root: Path, *, network: str = "on", timeout: float = 20, kind: str = "bwrap"
) -> BashTool:
    tool = BashTool(make_sandbox(kind, root, network, ()), timeout=timeout, output_cap=20_000)
    return closed_after_test(tool)


@pytest.fixture
def var_tmp() -> Iterator[Path]:
    """A fresh directory under /var/tmp: outside /tmp, which the sandbox replaces."""
    directory = Path(tempfile.mkdtemp(prefix="ralph-test-", dir="/var/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


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
    assert result.exit_code == 124 and time.monotonic() - started < 25  # not the 30 s sleep
    time.sleep(1.5)
    assert not (git_repo / "late.txt").exists()


def test_home_is_private_and_writable_across_commands(tool: BashTool) -> None:
    assert tool.run({"command": "echo kept > ~/note"}).exit_code == 0
    assert tool.run({"command": "cat ~/note; echo $HOME"}).content.startswith("kept\n/")


def test_proc_and_sys_are_read_only(tool: BashTool) -> None:
    # Root writing kernel.core_pattern = code run as root on the host at the next crash. The
    # probe writes back the value it just read, so even a failing test changes nothing.
    host_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    for knob in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname"):
        result = tool.run({"command": f'v="$(cat {knob})" && printf "%s\\n" "$v" > {knob}'})
        assert result.exit_code != 0 and "Read-only file system" in result.content, (knob, result)
    assert Path("/proc/sys/kernel/core_pattern").read_text() == host_pattern
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    if Path(thp).exists():  # /sys comes from the read-only bind of /
        script = f'v="$(grep -o "\\[[a-z]*\\]" {thp} | tr -d "[]")" && echo "$v" > {thp}'
        result = tool.run({"command": script})
        assert result.exit_code != 0 and "Read-only file system" in result.content, result
    # The fresh procfs still works for the tools that read it.
    status = tool.run({"command": "grep -c '^Pid:' /proc/self/status; ls /proc/self/fd"})
    assert status.exit_code == 0 and status.content.startswith("1\n"), status.content


def writable_run_dir() -> Path | None:
    """A directory under /run this process may create entries in (as root, /run itself)."""
    uid = os.getuid()
    for candidate in ("/run", os.environ.get("XDG_RUNTIME_DIR", ""), f"/run/user/{uid}"):
        if candidate.startswith("/run") and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return None


@pytest.fixture
def run_socket() -> Iterator[Path]:
    """A host server on a Unix socket in a fresh directory under /run; yields its path."""
    parent = writable_run_dir()
    if parent is None:
        pytest.skip("no writable directory under /run for a test socket")
    directory = Path(tempfile.mkdtemp(prefix="ralph-test-", dir=parent))
    path = directory / "daemon.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"host-daemon-reached")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def connect_unix(path: Path) -> str:
    """A shell command that connects to the Unix socket `path` and prints what it says."""
    code = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
        "print(s.recv(64).decode())"
    )
    return f"{sys.executable} -c '{code}' {path}"


@pytest.mark.parametrize("network", ["off", "on"])
def test_host_unix_sockets_under_run_are_unreachable(
    requires_bwrap: None, git_repo: Path, run_socket: Path, network: str
) -> None:
    # The server works: the host reaches it, so only the sandbox can make the difference.
    host = subprocess.run(connect_unix(run_socket), shell=True, capture_output=True, text=True)
    assert host.stdout.strip() == "host-daemon-reached", host.stderr
    result = sandboxed(git_repo, network=network).run({"command": connect_unix(run_socket)})
    assert result.exit_code != 0 and "host-daemon-reached" not in result.content
    assert "No such file or directory" in result.content, result.content
    listing = sandboxed(git_repo, network=network).run({"command": "ls -A /run /var/run"})
    assert run_socket.parent.name not in listing.content, listing.content


@pytest.fixture
def real_home() -> Iterator[Path]:
    """A scratch directory in the runner's real home (under /root or /home), removed after."""
    home = Path(os.path.realpath(os.path.expanduser("~")))
    if not os.access(home, os.W_OK):
        pytest.skip(f"the home {home} is not writable")
    scratch = Path(tempfile.mkdtemp(prefix=".ralph-test-", dir=home))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_homes_are_hidden_but_a_repository_and_tools_in_them_are_not(
    requires_bwrap: None, real_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (real_home / ".secret-cred").write_text("runner-credential\n")
    tools = real_home / "bin"
    tools.mkdir()
    (tools / "hello-tool").write_text("#!/bin/sh\necho tool-ran\n")
    (tools / "hello-tool").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    repo = make_repo(real_home / "repo")
    tool = sandboxed(repo)
    try:
        secret = tool.run({"command": f"cat {real_home}/.secret-cred"})
        assert secret.exit_code != 0 and "runner-credential" not in secret.content
        assert "No such file or directory" in secret.content, secret.content
        # The repository is visible and writable at its real path, its .git read-only.
        work = tool.run({"command": "cat README.md && echo made > new.txt"})
        assert work.exit_code == 0 and work.content == "# project", work.content
        assert (repo / "new.txt").read_text() == "made\n"
        assert tool.run({"command": "touch .git/hooks/x"}).exit_code != 0
        # A tool on PATH in the hidden home still runs; nothing else of the home is there.
        assert tool.run({"command": "hello-tool"}).content == "tool-ran"
        listing = tool.run({"command": f"ls -A {real_home}"}).content
        assert listing.split() == ["bin", "repo"], listing
    finally:
        tool.close()


def test_a_home_outside_root_and_home_is_hidden_too(
    requires_bwrap: None,
    git_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    var_tmp: Path,
) -> None:
    home = var_tmp
    (home / ".netrc").write_text("machine example.com password runner-credential\n")
    monkeypatch.setenv("HOME", str(home))
    assert Path(home) in hidden_dirs()
    result = sandboxed(git_repo).run({"command": f"cat {home}/.netrc"})
    assert result.exit_code != 0 and "runner-credential" not in result.content
    assert "No such file or directory" in result.content, result.content


def test_tools_and_a_venv_reached_through_a_symlinked_home_work(
    requires_bwrap: None,
    monkeypatch: pytest.MonkeyPatch,
    var_tmp: Path,
) -> None:
    # $HOME or /home as a symlink into the hidden home (/home -> /var/home on Fedora Atomic,
    # homes moved to another disk): bwrap could not make a mount point through the link and
    # every command failed; a venv on PATH through it was bound read-only over the repository.
    base = var_tmp
    real = base / "real-home"
    (real / ".local/bin").mkdir(parents=True)
    (real / ".local/bin/local-tool").write_text("#!/bin/sh\necho tool-ran\n")
    (real / ".local/bin/local-tool").chmod(0o755)
    (real / ".netrc").write_text("machine example.com password runner-credential\n")
    repo = make_repo(real / "repo")
    (repo / ".venv/bin").mkdir(parents=True)
    link = base / "link"
    link.symlink_to(real)
    monkeypatch.setenv("HOME", str(link))
    path = [str(link / "repo/.venv/bin"), str(link / ".local/bin"), os.environ["PATH"]]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    tool = sandboxed(link / "repo")
    result = tool.run({"command": "local-tool && touch .venv/bin/installed && pwd"})
    assert result.exit_code == 0, result.content
    assert result.content == f"tool-ran\n{repo}", result.content
    assert (repo / ".venv/bin/installed").is_file()
    secret = tool.run({"command": f"cat {link}/.netrc {real}/.netrc"})
    assert secret.exit_code != 0 and "runner-credential" not in secret.content
    tool.close()


def test_path_dirs_behind_symlinks_in_a_hidden_home_still_run(
    requires_bwrap: None,
    git_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    var_tmp: Path,
) -> None:
    # Links inside the hidden home are gone in the sandbox: a PATH dir reached through one is
    # shown where PATH names it, whether it points into the home (~/bin -> ~/dotfiles/bin)
    # or out of it (a profile link to a store, as NixOS's /run/current-system).
    base = var_tmp
    home, store = base / "home", base / "store/tools-1.0"
    for bin_dir, name in ((home / "dotfiles/bin", "dot-tool"), (store / "bin", "store-tool")):
        bin_dir.mkdir(parents=True)
        (bin_dir / name).write_text(f"#!/bin/sh\necho {name}-ran\n")
        (bin_dir / name).chmod(0o755)
    (home / "bin").symlink_to("dotfiles/bin")
    (home / "profile").symlink_to(store)
    (home / ".netrc").write_text("machine example.com password runner-credential\n")
    monkeypatch.setenv("HOME", str(home))
    path = [str(home / "bin"), str(home / "profile/bin"), os.environ["PATH"]]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    tool = sandboxed(git_repo)
    result = tool.run({"command": "dot-tool && store-tool"})
    assert result.content == "dot-tool-ran\nstore-tool-ran", result.content
    assert tool.run({"command": f"cat {home}/.netrc"}).exit_code != 0
    tool.close()


def test_toolchains_installed_in_a_hidden_home_are_shown_whole(
    requires_bwrap: None, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Their bin and lib are not enough: a Homebrew keg links another keg through the prefix,
    # a Go root needs its src and pkg/tool, a JDK its conf. ~/.local is not shown whole.
    home = Path(tempfile.mkdtemp(prefix="ralph-test-home-", dir="/var/tmp"))

    def tool(path: Path, reads: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\ncat {reads}\n")
        path.chmod(0o755)
        reads.parent.mkdir(parents=True, exist_ok=True)
        reads.write_text(f"{path.name}-ok\n")

    try:
        brew, goroot, jdk, local = home / "brew", home / "sdk/go", home / "jdk", home / ".local"
        tool(brew / "Cellar/brewed/1.0/bin/brewed", brew / "Cellar/dep/2.0/lib/brewed")
        (brew / "opt").mkdir()
        (brew / "opt/dep").symlink_to("../Cellar/dep/2.0")
        (brew / "Cellar/brewed/1.0/bin/brewed").write_text(
            f"#!/bin/sh\ncat {brew}/opt/dep/lib/brewed\n"
        )
        (brew / "bin").mkdir()
        (brew / "bin/brewed").symlink_to("../Cellar/brewed/1.0/bin/brewed")
        tool(goroot / "bin/gotool", goroot / "src/runtime/gotool")
        (goroot / "pkg/tool").mkdir(parents=True)
        (goroot / "VERSION").write_text("go1.22\n")
        tool(jdk / "bin/javatool", jdk / "conf/security/javatool")
        (jdk / "lib").mkdir()
        (jdk / "release").write_text('JAVA_VERSION="21"\n')
        tool(local / "bin/localtool", local / "lib/localtool")
        (local / "share/keyrings").mkdir(parents=True)
        (local / "share/keyrings/login.keyring").write_text("runner-credential\n")
        monkeypatch.setenv("HOME", str(home))
        bins = [str(d / "bin") for d in (brew, goroot, jdk, local)]
        monkeypatch.setenv("PATH", os.pathsep.join([*bins, os.environ["PATH"]]))
        sandbox = sandboxed(git_repo)
        result = sandbox.run({"command": "brewed; gotool; javatool; localtool"})
        assert result.content == "brewed-ok\ngotool-ok\njavatool-ok\nlocaltool-ok", result.content
        listing = sandbox.run({"command": f"ls -A {local}"}).content
        assert listing.split() == ["bin", "lib"], listing
        sandbox.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def foreign_repo(git_repo: Path) -> Iterator[tuple[Path, str]]:
    """A repository another user owns, and the prefix git commands need to see it so: really
    chowned when the tests run as root, else git's own test switch for a different owner."""
    if os.geteuid() != 0:
        yield git_repo, "GIT_TEST_ASSUME_DIFFERENT_OWNER=1 "
        return
    for path in (git_repo, *git_repo.rglob("*")):
        os.lchown(path, 54321, 54321)
    yield git_repo, ""
    for path in (git_repo, *git_repo.rglob("*")):
        os.lchown(path, 0, 0)


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_the_agents_git_works_in_a_repository_another_user_owns(
    requires_bwrap: None, foreign_repo: tuple[Path, str], kind: str
) -> None:
    # The runner's git trusts it (its ~/.gitconfig has safe.directory), the agent's HOME is
    # private: without a safe.directory there, git stops at "dubious ownership".
    repo, prefix = foreign_repo
    tool = sandboxed(repo, kind=kind)
    try:
        for command in ("status --short", "log --oneline", "diff --stat HEAD"):
            result = tool.run({"command": f"{prefix}git {command}"})
            assert result.exit_code == 0 and "dubious" not in result.content, result.content
        assert tool.run({"command": f"{prefix}git log --format=%s"}).content == "initial"
    finally:
        tool.close()


def test_root_in_another_users_repository_is_refused_with_the_ways_out(
    requires_bwrap: None, foreign_repo: tuple[Path, str]
) -> None:
    repo, _ = foreign_repo
    if os.geteuid() != 0:
        pytest.skip("only root can run in another user's repository")
    # The reason: in the sandbox root is "other" to the owner's files, and nothing is saved.
    tool = sandboxed(repo)
    assert tool.run({"command": "echo x >> README.md || echo x > new.txt"}).exit_code != 0
    tool.close()
    for mode in ("auto", "bwrap"):
        with pytest.raises(UsageError) as caught:
            choose_sandbox(mode, "on", repo)
        message = str(caught.value)
        assert f"{repo} belongs to 54321 (uid 54321) but ralph runs as root" in message
        assert "sudo -u 54321" in message and "--worktree" in message, message
        assert "--sandbox none" in message
    assert choose_sandbox("none", "on", repo) == ("none", [])
    assert choose_sandbox("auto", "on", repo.parent) == ("bwrap", [])  # root's own: fine


def test_a_run_as_root_in_another_users_repository_stops_before_git(
    requires_bwrap: None, foreign_repo: tuple[Path, str], tmp_path: Path
) -> None:
    repo, _ = foreign_repo
    if os.geteuid() != 0:
        pytest.skip("only root can run in another user's repository")
    script = write_script(tmp_path / "session.yaml", [["done <promise>X</promise>"]])
    args = ["go on <promise>X</promise>", "--model", f"script:{script}", "--max-iterations", "1"]
    result = run_cli(args, cwd=repo)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "belongs to 54321" in lines[0], result.stderr
    assert git(repo, "-c", "safe.directory=*", "branch", "--format=%(refname:short)") == "main"
    assert not (repo / ".ralph").exists()


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_cargo_from_rustup_in_the_home_finds_its_toolchains(
    requires_bwrap: None,
    git_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    var_tmp: Path,
) -> None:
    # rustup's proxies (cargo, rustc) look for toolchains in RUSTUP_HOME, by default ~/.rustup
    # of a HOME the agent does not have: every cargo failed, sandboxed or not.
    home = var_tmp
    (home / ".rustup/toolchains/stable").mkdir(parents=True)
    (home / ".rustup/toolchains/stable/version").write_text("toolchain-found\n")
    (home / ".rustup/credentials.toml").write_text("runner-credential\n")
    (home / ".cargo/bin").mkdir(parents=True)
    rustup = home / ".cargo/bin/rustup"
    rustup.write_text('#!/bin/sh\ncat "$RUSTUP_HOME/toolchains/stable/version"\n')
    rustup.chmod(0o755)
    (home / ".cargo/bin/cargo").symlink_to("rustup")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{home}/.cargo/bin{os.pathsep}{os.environ['PATH']}")
    tool = sandboxed(git_repo, kind=kind)
    assert tool.run({"command": "cargo build"}).content == "toolchain-found"
    if kind == "bwrap":  # read-only, and nothing else of the home
        assert tool.run({"command": f"touch {home}/.rustup/x"}).exit_code != 0
        assert tool.run({"command": f"ls -A {home}"}).content.split() == [".cargo", ".rustup"]
    tool.close()


def test_rustup_home_is_the_runners_when_rustup_is_on_path(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/rustup").write_text("")
    (tmp_path / "home/.rustup/toolchains").mkdir(parents=True)
    (tmp_path / "elsewhere/toolchains").mkdir(parents=True)
    env = {"HOME": str(tmp_path / "home")}
    path = f"/usr/bin{os.pathsep}{tmp_path}/bin"
    assert rustup_home(path, env) == tmp_path / "home/.rustup"
    # The official rust image sets RUSTUP_HOME=/usr/local/rustup.
    assert rustup_home(path, {**env, "RUSTUP_HOME": f"{tmp_path}/elsewhere"}) == (
        tmp_path / "elsewhere"
    )
    assert rustup_home("/usr/bin", env) is None  # no rustup on PATH
    assert rustup_home(path, {"HOME": str(tmp_path / "bin")}) is None  # no toolchains there


def test_a_real_rustup_cargo_runs_in_the_sandbox(tool: BashTool) -> None:
    if shutil.which("rustup") is None or shutil.which("cargo") is None:
        pytest.skip("no rustup on PATH")
    result = tool.run({"command": "cargo --version && rustc --version"})
    assert result.exit_code == 0 and result.content.startswith("cargo "), result.content


@pytest.mark.parametrize("home", [None, "", "/", "relative/home", "/no/such/home"])
def test_missing_dirs_and_odd_homes_are_not_mounted(
    requires_bwrap: None,
    git_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    home: str | None,
) -> None:
    # bwrap fails when a tmpfs target is missing: hosts without /run or /home, a HOME that is
    # unset, "/", relative or gone must still give a working sandbox.
    (tmp_path / "a-file").write_text("")
    missing = [str(tmp_path / "no-such-dir"), str(tmp_path / "a-file")]
    monkeypatch.setattr(sandbox_module, "SOCKET_DIRS", (*missing, "/run"))
    monkeypatch.setattr(sandbox_module, "HOME_DIRS", ("/no/such/home-dir",))
    if home is None:
        monkeypatch.delenv("HOME", raising=False)
    else:
        monkeypatch.setenv("HOME", home)
    hidden = hidden_dirs()
    assert all(path.is_dir() for path in hidden) and Path("/") not in hidden, hidden
    assert tool_run_ok(git_repo)


def tool_run_ok(repo: Path) -> bool:
    tool = sandboxed(repo)
    try:
        result = tool.run({"command": "echo works > f.txt && cat f.txt"})
        return result.exit_code == 0 and result.content == "works"
    finally:
        tool.close()


def test_root_only_host_secrets_look_empty(tool: BashTool) -> None:
    files = secret_files()
    assert Path("/etc/shadow") in files  # present on every Linux this runs on
    sizes = tool.run({"command": "wc -c " + " ".join(map(str, files))}).content
    assert [line.split()[0] for line in sizes.splitlines()] == ["0"] * (len(files) + 1), sizes
    if Path("/etc/ssl/private").is_dir():
        assert tool.run({"command": "ls -A /etc/ssl/private"}).content == "(no output)"


def test_tool_dirs_rebinds_only_what_tools_need(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = home / "repo"
    for d in ("bin", ".pyenv/shims", ".pyenv/versions/3.12/bin", ".ssh", "repo/.venv/bin"):
        (home / d).mkdir(parents=True)
    (home / ".pyenv/versions/3.12/bin/python3").write_text("")
    (home / ".pyenv/versions/3.12/lib/python3.12").mkdir(parents=True)
    (repo / ".venv" / "pyvenv.cfg").write_text(f"home = {home}/.pyenv/versions/3.12/bin\n")
    path_var = os.pathsep.join(
        [f"{home}/bin", f"{home}/.pyenv/shims", f"{repo}/.venv/bin", "/usr/bin", "relative"]
    )
    # The shims' version manager root as a whole (it holds the versions), the bin, not the
    # repository's own directories (bound with it), nothing outside hidden directories.
    assert tool_dirs(repo, [home], path_var) == [home / ".pyenv", home / "bin"]
    assert tool_dirs(repo, [home], "") == [home / ".pyenv/versions/3.12"]
    # pyvenv.cfg is repository content: a `home` that is no Python installation is ignored.
    (repo / ".venv" / "pyvenv.cfg").write_text(f"home = {home}/.ssh/bin\n")
    assert tool_dirs(repo, [home], "") == []
    # A hidden directory itself is never re-bound, even if it is on PATH or holds shims.
    assert tool_dirs(repo, [home], str(home)) == []
    assert tool_dirs(repo, [home / ".pyenv"], f"{home}/.pyenv/shims") == [home / ".pyenv/shims"]


def test_tool_dirs_follow_install_links_and_keep_a_bins_lib(tmp_path: Path) -> None:
    home = tmp_path / "home"
    local = home / ".local"
    uv_python = local / "share/uv/python/cpython-3.12/bin"
    for d in (local / "bin", local / "lib/python3.12", uv_python, local / "share/keyrings"):
        d.mkdir(parents=True)
    (uv_python.parent / "lib").mkdir()
    (uv_python / "python3.12").write_text("")
    (local / "bin" / "python3.12").symlink_to(uv_python / "python3.12")
    (local / "bin" / "elsewhere").symlink_to("/usr/bin/env")  # not hidden: not re-bound
    assert tool_dirs(tmp_path / "repo", [home], str(local / "bin")) == [
        local / "bin",
        local / "lib",
        uv_python,
        uv_python.parent / "lib",
    ]  # and not the rest of ~/.local/share


def test_needed_files_in_hidden_directories_stay_visible(
    requires_bwrap: None, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As /etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf on systemd-resolved hosts.
    parent = writable_run_dir()
    if parent is None:
        pytest.skip("no writable directory under /run for a test file")
    directory = Path(tempfile.mkdtemp(prefix="ralph-test-", dir=parent))
    try:
        (directory / "resolv.conf").write_text("nameserver 127.0.0.53\n")
        (directory / "other").write_text("hidden\n")
        link = git_repo.parent / "resolv.conf"
        link.symlink_to(directory / "resolv.conf")
        monkeypatch.setattr(sandbox_module, "NEEDED_FILES", (str(link),))
        tool = sandboxed(git_repo)
        assert tool.run({"command": f"cat {directory}/resolv.conf"}).content == (
            "nameserver 127.0.0.53"
        )
        assert tool.run({"command": f"cat {directory}/other"}).exit_code != 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_ralph_yaml_is_read_only_in_the_sandbox(requires_bwrap: None, git_repo: Path) -> None:
    (git_repo / "ralph.yaml").write_text("max_iterations: 3\n")
    tool = sandboxed(git_repo)
    for command in (
        "echo 'sandbox: none' >> ralph.yaml",
        "rm -f ralph.yaml",
        "mv ralph.yaml old.yaml",
        "sed -i s/3/30/ ralph.yaml",
    ):
        result = tool.run({"command": command})
        assert result.exit_code != 0, (command, result.content)
    assert (git_repo / "ralph.yaml").read_text() == "max_iterations: 3\n"
    assert tool.run({"command": "cat ralph.yaml"}).content == "max_iterations: 3"
    assert tool.run({"command": "echo x > other.yaml"}).exit_code == 0


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


def test_writing_to_any_inherited_descriptor_does_not_grow_the_runner(
    tool: BashTool, git_repo: Path
) -> None:
    from tests.test_tools_bash import flood_peak

    (git_repo / "sub").mkdir()
    output, peak = flood_peak(tool)
    assert "flooded" in output
    assert peak < 5_000_000, f"peak Python memory {peak} bytes"
    assert tool.cwd == git_repo / "sub"


def test_no_process_outlives_its_command_even_in_a_session_of_its_own(
    tool: BashTool, git_repo: Path
) -> None:
    from tests.test_tools_bash import assert_no_process_outlives_its_command

    assert_no_process_outlives_its_command(tool, git_repo)

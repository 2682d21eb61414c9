"""Where the agent's commands start: the allow-listed environment and the bubblewrap sandbox.

Every command of the agent (and every verify command) is started from `Sandbox.launch`, the
one place that builds its argv and environment.

With bwrap the whole filesystem is read-only, the repository (or worktree) is writable, its
git data, the runner's `.ralph` state and `ralph.yaml` are read-only again (the runner
commits, the agent does not: no hooks, no config, no history rewriting), `/tmp` is private,
`/proc` is a fresh read-only procfs (a writable `/proc/sys` would let root in the sandbox set
`kernel.core_pattern` and run code as root on the host), homes (`/root`, `/home`, `$HOME`)
and daemon socket directories (`/run`, ...) are hidden behind empty tmpfs mounts, every
namespace is unshared (the network too with `--network off`) and all capabilities are
dropped: as root, bwrap otherwise keeps them and `/` could be remounted writable.

Network: `on` (the default) gives the commands a network namespace of their own with
user-mode networking (see netns): audits can run `pip-audit` / `npm audit` and install tools,
but the host's loopback services and cloud metadata addresses are out of reach (a
prompt-injected agent can still send repository content out); `host` shares the host's
network, loopback included; `off` leaves only the sandbox's own loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..config import CONFIG_FILE
from ..errors import UsageError
from .hostview import rustup_home, tool_dirs, under
from .netns import NetworkError, UserNet, loopback_nameserver, sandbox_resolv_conf
from .probe import effective_network

# What the agent inherits from the runner's environment; nothing else reaches it.
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "TERM", "TZ")
# Fixed values for a process nobody watches: never wait for a password or a pager.
HEADLESS_ENV = {"GIT_TERMINAL_PROMPT": "0", "PAGER": "cat", "GIT_PAGER": "cat"}
# The runner's state directory (journal, lock, worktrees): the agent may read it, not change it.
STATE_DIR = ".ralph"
# Where daemons keep their Unix sockets (docker, containerd, podman, dbus, PostgreSQL, LXD,
# MySQL): a socket is reached through the filesystem, whatever the network namespace, and
# docker's or LXD's is root on the host. Hidden behind an empty tmpfs when they exist.
SOCKET_DIRS = (
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/lxd",
    "/var/snap/lxd/common/lxd",
    "/var/lib/incus",
    "/var/lib/mysql",
)
# Homes hold the runner's credentials (.ssh, .aws, .config, .netrc, .npmrc, .gitconfig, ...).
HOME_DIRS = ("/root", "/home")
# Never hidden, even when HOME points there: the sandbox could not run.
SYSTEM_DIRS = frozenset(
    [
        "/",
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/etc",
        "/var",
        "/opt",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/boot",
        "/mnt",
        "/srv",
    ]
)
# Host files the sandbox needs even when they point into a hidden directory (DNS on hosts
# where /etc/resolv.conf links to systemd-resolved's file under /run).
NEEDED_FILES = ("/etc/resolv.conf",)
# Root-only host secrets that the read-only view of / would still show to root in the
# sandbox (owner permissions apply even with every capability dropped): replaced by an empty
# file, or an empty directory.
SECRET_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
SECRET_GLOBS = ("/etc/ssh/ssh_host_*_key",)
SECRET_DIRS = ("/etc/ssl/private",)
# The agent's git config, in its private HOME (the runner's ~/.gitconfig is not there). git
# refuses a repository another user owns ("dubious ownership") unless it is a safe.directory,
# and in the sandbox files of any uid but the runner's belong to "nobody". Inside the sandbox
# git can run nothing the agent could not run itself, so its ownership check protects nothing;
# "*" also covers submodules.
AGENT_GITCONFIG = "[safe]\n\tdirectory = *\n"


def agent_env(
    home: Path, passed: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The agent's environment: the allow-list, a private HOME and the `--env` RALPH_* names."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in ENV_ALLOW if name in source}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(HEADLESS_ENV)
    env["HOME"] = str(home)
    for name in passed:
        # config.validate accepts only RALPH_* names; checked again because this is the gate.
        if name.startswith("RALPH_") and name in source:
            env[name] = source[name]
    return env


def git_paths(root: Path) -> list[Path]:
    """The git data of `root` the agent must not change: `.git`, and for a worktree its
    `.git` file plus the worktree's git dir and the main repository's common git dir."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return [dot_git.resolve()]
    if not dot_git.is_file():
        return []
    paths = [dot_git]
    try:
        text = dot_git.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return paths
    if text.startswith("gitdir:"):
        gitdir = (root / text.removeprefix("gitdir:").strip()).resolve()
        paths.append(gitdir)
        common_file = gitdir / "commondir"
        if common_file.is_file():
            common = (gitdir / common_file.read_text(encoding="utf-8").strip()).resolve()
            paths.append(common)
    return paths


def hidden_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Host directories bwrap covers with an empty tmpfs: homes (/root, /home, the runner's
    $HOME), daemon socket directories and root-only key directories, each once, symlinks
    resolved, existing ones only."""
    source = os.environ if environ is None else environ
    candidates = [*SOCKET_DIRS, *HOME_DIRS, *SECRET_DIRS]
    home = source.get("HOME", "")
    if os.path.isabs(home):
        candidates.append(home)
    found: list[Path] = []
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real in SYSTEM_DIRS or not os.path.isdir(real) or Path(real) in found:
            continue
        found.append(Path(real))
    return found


def secret_files() -> list[Path]:
    """Root-only secret files of the host (password hashes, SSH host keys) that exist."""
    found = [Path(name) for name in SECRET_FILES]
    for pattern in SECRET_GLOBS:
        found += sorted(Path("/").glob(pattern.lstrip("/")))
    return [path for path in found if path.is_file() and not path.is_symlink()]


HOME_PREFIX = "ralph-home-"  # + pid + "-": the agent's private HOME in the temp directory


def remove_dead_homes(tmp: Path | None = None) -> list[Path]:
    """Remove the private HOMEs that runs killed hard left in the temp directory (their
    process is gone, so nothing closed them); the ones removed."""
    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{HOME_PREFIX}*-*"):
        pid = path.name.removeprefix(HOME_PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or path.stat().st_uid != os.getuid() or _alive(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@dataclass(frozen=True)
class Launch:
    """A process to start: argv, environment and working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass(frozen=True)
class HostView:
    """What of the host bwrap hides (directories, emptied files) and binds back read-only."""

    hidden: list[Path]
    blanked: list[Path]
    tools: list[Path]
    needed: list[Path]


@dataclass
class Sandbox:
    """Builds the launch of a shell script for the agent, sandboxed or not."""

    kind: str  # "bwrap" | "none"
    root: Path
    network: str = "on"  # on (own user-mode network) | off | host
    passed_env: tuple[str, ...] = ()
    bwrap: str = "bwrap"
    # Host loopback ports reachable at 127.0.0.1:PORT with `network` on (operator endpoints).
    host_ports: tuple[int, ...] = ()
    _home: Path | None = field(default=None, repr=False)
    _view: HostView | None = field(default=None, repr=False)
    _net: UserNet | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    @property
    def home(self) -> Path:
        """The agent's private HOME, created on first use (kept across commands of a run)."""
        if self._home is None or not self._home.is_dir():
            # In a directory of its own, beside the empty file (which the agent cannot reach).
            # The pid in its name lets a later run remove it if this process is killed.
            scratch = Path(tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{os.getpid()}-")).resolve()
            self._home = scratch / "home"
            self._home.mkdir()
            (self._home / ".gitconfig").write_text(AGENT_GITCONFIG, encoding="utf-8")
        return self._home

    @property
    def empty_file(self) -> Path:
        """An empty file to bind over host secrets (/dev/null is unusable: bwrap's binds are
        nodev), beside the private HOME."""
        empty = self.home.parent / "empty"
        if not empty.is_file():
            empty.touch()
        return empty

    def launch(self, script: str) -> Launch:
        """The one place an agent process is defined: `bash -c script` in the repository root."""
        env = agent_env(self.home, self.passed_env)
        if self.rustup_home is not None:
            env["RUSTUP_HOME"] = str(self.rustup_home)
        shell = [shutil.which("bash") or "/bin/bash", "--noprofile", "--norc", "-c", script]
        if self.kind == "none":
            # bwrap has --die-with-parent; unsandboxed, setpriv gives the shell the same fate,
            # so a killed runner leaves no agent command running on in the repository.
            setpriv = shutil.which("setpriv")
            prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
            return Launch([*prefix, *shell], env, self.root)
        return Launch([*self.bwrap_args(), "--", *shell], env, self.root)

    def bwrap_args(self) -> list[str]:
        """bwrap and its options (without the command) for this repository; with `network`
        on, behind the nsenter that puts it in the sandbox's own network namespace."""
        args = [*self._network_prefix(), self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev"]
        # A fresh procfs for the new PID namespace, then read-only: /proc/sys must not be
        # writable (kernel.core_pattern runs a program as root on the host).
        args += ["--proc", "/proc", "--remount-ro", "/proc"]
        view = self._host_view()
        # (path, kind): "tmpfs" hides, "null" empties a file, "ro" shows read-only, "rw" shows
        # writable.
        mounts = [(Path("/tmp"), "tmpfs"), *((p, "tmpfs") for p in view.hidden)]
        mounts += [(p, "null") for p in view.blanked]
        resolv = self._resolv_conf()
        needed = [p for p in view.needed if resolv is None or p != resolv[1]]
        mounts += [(p, "ro") for p in (*view.tools, *needed)]
        if resolv is not None:
            mounts.append((resolv[1], "resolv"))
        mounts += [(self.home, "rw"), (self.root, "rw")]
        protected = [*git_paths(self.root), self.root / STATE_DIR]
        config = self.root / CONFIG_FILE
        if config.is_file():
            protected.append(Path(os.path.realpath(config)))
        mounts += [(p, "ro") for p in protected if p.exists()]
        # Parents before children (a stable sort keeps this order for one depth): hidden
        # directories are emptied first, then what must stay visible is bound back, and a
        # read-only path inside the writable root stays read-only.
        for path, kind in sorted(mounts, key=lambda m: len(m[0].parts)):
            if kind == "tmpfs":
                args += ["--tmpfs", str(path)]
            elif kind == "null":
                args += ["--ro-bind", str(self.empty_file), str(path)]
            elif kind == "resolv" and resolv is not None:
                args += ["--ro-bind", str(resolv[0]), str(path)]
            else:
                args += ["--bind" if kind == "rw" else "--ro-bind", str(path), str(path)]
        args += ["--unshare-all"]
        if self.network in ("on", "host"):
            # `on`: the namespace nsenter entered (the sandbox's own); `host`: the host's.
            args += ["--share-net"]
        args += ["--cap-drop", "ALL", "--die-with-parent", "--new-session"]
        args += ["--chdir", str(self.root)]
        return args

    def _network_prefix(self) -> list[str]:
        if self.network != "on":
            return []
        if self._net is None:
            self._net = UserNet(self.host_ports, self.home.parent)
        try:
            return self._net.enter()
        except NetworkError as exc:
            raise UsageError(
                f"--network on: the sandbox's network could not start: {exc}; use "
                "--network host or off"
            ) from exc

    def _resolv_conf(self) -> tuple[Path, Path] | None:
        """(file to show, where) when the sandbox needs its own resolv.conf: with its own
        network, a resolver on the host's loopback (systemd-resolved) is out of reach, so
        queries go to pasta's forwarder instead."""
        if self.network != "on" or not loopback_nameserver():
            return None
        path = self.home.parent / "resolv.conf"
        if not path.is_file():
            path.write_text(sandbox_resolv_conf(), encoding="utf-8")
        return path, Path(os.path.realpath("/etc/resolv.conf"))

    @cached_property
    def rustup_home(self) -> Path | None:
        """The runner's rustup toolchains for the agent's cargo (read-only under bwrap)."""
        return rustup_home(os.environ.get("PATH", os.defpath), os.environ)

    def _host_view(self) -> HostView:
        """What of the host to hide and what to show again; worked out on first use and kept
        for the run."""
        if self._view is None:
            hidden = hidden_dirs()
            tools = tool_dirs(self.root, hidden, os.environ.get("PATH", os.defpath))
            # rustup's toolchains, read-only (the agent runs them, it does not install any);
            # like the PATH tools, never a whole hidden directory.
            tools += [
                path
                for path in [self.rustup_home]
                if path and path not in hidden and under(path, hidden) and not under(path, tools)
            ]
            needed = []
            for name in NEEDED_FILES:
                real = Path(os.path.realpath(name))
                if real.is_file() and under(real, hidden):
                    needed.append(real)
            self._view = HostView(hidden, secret_files(), tools, needed)
        return self._view

    def cleanup(self) -> None:
        """Remove the private HOME and the empty file, stop the network (end of run)."""
        if self._net is not None:
            self._net.close()
            self._net = None
        if self._home is not None:
            shutil.rmtree(self._home.parent, ignore_errors=True)
            self._home = None


def make_sandbox(
    kind: str,
    root: Path,
    network: str,
    passed_env: Sequence[str],
    host_ports: Sequence[int] = (),
) -> Sandbox:
    """A Sandbox of `kind` for `root` (kind from `choose_sandbox`); `host_ports` are host
    loopback ports its commands may reach with the network `on`."""
    bwrap = shutil.which("bwrap") or "bwrap"
    network = effective_network(kind, network)
    return Sandbox(kind, root, network, tuple(passed_env), bwrap, tuple(host_ports))

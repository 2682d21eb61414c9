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

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from ..config import CONFIG_FILE
from ..errors import UsageError
from .netns import NetworkError, UserNet, loopback_nameserver, network_problem, sandbox_resolv_conf

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


def _under(path: Path, dirs: Sequence[Path]) -> bool:
    return any(path.is_relative_to(d) for d in dirs)


def _python_prefix(venv: Path) -> Path | None:
    """The base Python installation of the virtual environment `venv`, if it has one.

    pyvenv.cfg is repository content, so its `home` is trusted only when it names a real
    Python installation (bin/python3 and lib/python3.*), never an arbitrary host directory.
    The path is the one written there (Python follows it as written, symlinks included).
    """
    try:
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home" and os.path.isabs(value.strip()):
            prefix = Path(os.path.normpath(value.strip())).parent
            if (prefix / "bin" / "python3").is_file() and any(prefix.glob("lib/python3.*/")):
                return prefix
    return None


def rustup_home(path_var: str, environ: Mapping[str, str]) -> Path | None:
    """Where the rustup on PATH keeps its toolchains, when PATH has one.

    Its proxies (cargo, rustc, ...) find them through RUSTUP_HOME, by default ~/.rustup of a
    HOME the agent does not share: the agent is given this path, or every cargo fails with
    "rustup could not choose a version".
    """
    entries = [e for e in path_var.split(os.pathsep) if os.path.isabs(e)]
    if not any(os.path.isfile(os.path.join(entry, "rustup")) for entry in entries):
        return None
    home = environ.get("RUSTUP_HOME") or os.path.join(environ.get("HOME", ""), ".rustup")
    if not os.path.isabs(home):
        return None
    real = Path(os.path.realpath(home))
    return real if (real / "toolchains").is_dir() else None


# Entries of a PATH directory looked at for symlinks into hidden directories.
LINKS_SCANNED = 500
# Files that mark a `bin`'s parent as one installation the tools need whole: a Homebrew prefix
# (kegs link each other's libraries through it), a Go root (src, pkg/tool), a JDK (conf).
# Never a shared prefix like ~/.local or ~/.cargo, which hold keyrings and credentials.
INSTALL_MARKERS = (("Cellar",), ("VERSION", "src", "pkg/tool"), ("release", "conf", "lib"))


def _installation(path: Path) -> bool:
    """Whether the `bin` directory `path` belongs to one such installation."""
    return path.name == "bin" and any(
        all((path.parent / name).exists() for name in names) for names in INSTALL_MARKERS
    )


def _with_lib(path: Path) -> list[Path]:
    """A `bin` directory and the `lib` beside it, where its programs keep their code (npm in
    ~/.nvm/versions/node/vX/lib, `pip install --user` in ~/.local/lib)."""
    lib = path.parent / "lib"
    return [path, lib] if path.name == "bin" and lib.is_dir() else [path]


def sandbox_path(path: str | Path, hidden: Sequence[Path]) -> Path:
    """Where the absolute `path` leads in the sandbox: its symlinks are followed until it
    enters a hidden directory, where none is left (its tmpfs is empty).

    A mount point must be made there: bwrap cannot make one through a symlink into a hidden
    directory (a symlinked $HOME, /home -> /var/home), and the real path alone would miss a
    link that is itself hidden (~/bin -> ~/dotfiles/bin, NixOS's /run/current-system).
    """
    parts = Path(os.path.normpath(path)).parts[1:]
    current = Path("/")
    for index, part in enumerate(parts):
        current = current / part
        if _under(current, hidden):
            return current.joinpath(*parts[index + 1 :])
        if current.is_symlink():
            current = Path(os.path.realpath(current))
    return current


def tool_dirs(root: Path, hidden: Sequence[Path], path_var: str) -> list[Path]:
    """What of the hidden directories the agent's tools need, to re-bind read-only.

    From the runner's PATH: each directory in a hidden one (a version manager's whole root for
    its `shims`, e.g. ~/.pyenv; a `bin` with its `lib`) and the directories its symlinks
    point to (pipx and uv install links). From the repository's `.venv` or `venv`: the Python
    installation it was made from. Each where the agent reaches it (`sandbox_path`) and at its
    real path; never a whole hidden directory, nor the repository's own (`hidden` and `root`
    are real paths).
    """

    def reached(path: str | Path) -> set[Path]:
        return {Path(os.path.realpath(path)), sandbox_path(path, hidden)}

    wanted: list[Path] = []
    for entry in path_var.split(os.pathsep):
        if not os.path.isabs(entry) or not os.path.isdir(entry):
            continue
        path = Path(os.path.normpath(entry))
        real = Path(os.path.realpath(path))
        if not any(_under(p, hidden) for p in reached(path)):
            continue
        if real.name == "shims":
            # The whole root (its versions, its libexec), or just the shims when the root
            # is a hidden directory itself.
            wanted += [path.parent, path]
            continue
        if _installation(path):
            wanted.append(path.parent)
        wanted += _with_lib(path)
        try:
            with os.scandir(real) as entries:
                first = itertools.islice(entries, LINKS_SCANNED)
                links = [item.path for item in first if item.is_symlink()]
        except OSError:
            links = []
        for link in links:
            target = Path(os.path.realpath(link))
            if target.is_file() and _under(target, hidden) and not target.is_relative_to(real):
                wanted += _with_lib(target.parent)
    for venv in (root / ".venv", root / "venv"):
        prefix = _python_prefix(venv)
        if prefix is not None:
            wanted.append(prefix)
    places = set().union(*map(reached, wanted)) if wanted else set()
    chosen: list[Path] = []
    for path in sorted(places, key=lambda p: (len(p.parts), p)):
        # Paths in the repository are bound with it; a whole hidden directory is never re-bound.
        if not _under(path, hidden) or path in hidden:
            continue
        if Path(os.path.realpath(path)).is_relative_to(root) or _under(path, chosen):
            continue
        chosen.append(path)
    return chosen


def ownership_problem(root: Path) -> str | None:
    """Why the sandbox could not write `root`, with the fix; None when it can.

    Run by root, bwrap maps only uid 0 into its user namespace and drops every capability, so
    files of another user (a repository mounted into a container, `sudo ralph` in someone's
    checkout) are read-only to the agent: nothing it does could be saved.
    """
    if os.geteuid() != 0:
        return None
    try:
        uid = root.stat().st_uid
    except OSError:
        return None
    if uid == 0:
        return None
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return (
        f"{root} belongs to {name} (uid {uid}) but ralph runs as root, and root cannot write "
        f"another user's files in the sandbox; run ralph as {name} (sudo -u {name} ...), or "
        "with --worktree (root owns the worktree ralph makes), or with --sandbox none"
    )


@lru_cache(maxsize=8)
def bwrap_problem(bwrap: str | None = None) -> str | None:
    """None when bubblewrap is installed and a trial sandbox runs, else what is wrong."""
    path = bwrap or shutil.which("bwrap")
    if path is None:
        return "bwrap not found on PATH"
    true = shutil.which("true") or "/bin/true"
    argv = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--remount-ro", "/proc", "--tmpfs", "/tmp"]
    argv += ["--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    try:
        proc = subprocess.run(
            [*argv, "--", true],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            env={"PATH": os.environ.get("PATH", os.defpath)},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not start: {exc}"
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        return f"bwrap does not work here: {detail}"
    return None


NETWORKS = ("on", "off", "host")


def effective_network(kind: str, network: str) -> str:
    """The network the sandbox will really have: `on` becomes `host` where the sandbox's own
    network cannot be set up (choose_sandbox warns about it)."""
    if kind == "bwrap" and network == "on" and network_problem() is not None:
        return "host"
    return network


def choose_sandbox(mode: str, network: str, root: Path | None = None) -> tuple[str, list[str]]:
    """The sandbox kind to use ("bwrap" or "none") and warnings to show; UsageError if the
    requested setting cannot be honoured (for the agent's checkout `root`, when given)."""
    if mode not in ("auto", "bwrap", "none"):
        raise UsageError(f"--sandbox {mode}: use auto, bwrap or none")
    if network not in NETWORKS:
        raise UsageError(f"--network {network}: use on, off or host")
    problem = None if mode == "none" else bwrap_problem()
    owner = ownership_problem(root) if root is not None and mode != "none" and not problem else None
    if owner:
        # Not a fallback to no sandbox even with auto: the user chooses how to run as root.
        raise UsageError(f"--sandbox {mode}: {owner}")
    if mode == "bwrap" and problem:
        raise UsageError(
            f"--sandbox bwrap: {problem}; install bubblewrap (Debian/Ubuntu: apt-get install "
            "bubblewrap) or run with --sandbox none"
        )
    kind = "bwrap" if mode != "none" and problem is None else "none"
    if kind == "none" and network == "off":
        why = problem if problem else "--sandbox none"
        raise UsageError(
            f"--network off needs the bubblewrap sandbox, which is not in use ({why}); install "
            "bubblewrap and use --sandbox auto|bwrap, or use --network on"
        )
    warnings = []
    if mode == "auto" and problem:
        warnings.append(
            f"sandbox off: {problem}; the agent's commands run unsandboxed with only a "
            "filtered environment (install bubblewrap, or pass --sandbox none to accept this)"
        )
    net_problem = network_problem() if kind == "bwrap" and network == "on" else None
    if net_problem:
        warnings.append(
            f"network isolation off: {net_problem}; the agent's commands share the host's "
            "network, its loopback services included (install passt for pasta, and "
            "iproute2; or pass --network host to accept this, or --network off)"
        )
    return kind, warnings


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
                if path and path not in hidden and _under(path, hidden) and not _under(path, tools)
            ]
            needed = []
            for name in NEEDED_FILES:
                real = Path(os.path.realpath(name))
                if real.is_file() and _under(real, hidden):
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

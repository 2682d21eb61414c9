"""Which sandbox a run gets: bubblewrap probed, the checkout's owner and the network checked.

`choose_sandbox` turns the operator's --sandbox/--network into the kind in use and the
warnings to show, or refuses (UsageError) a setting that cannot be honoured.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError
from .netns import network_problem


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

"""Figures 2 and 3: the cost of one tool call inside a run, and the CLI's start-up."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_loop import Clock, run_config
from common import (
    BIN,
    Row,
    Settings,
    git,
    make_repo,
    median,
    ms,
    silenced,
    timed,
    verdict,
    write_yaml,
)

TOOL_TARGETS = {"none": 0.015, "bwrap": 0.040}  # seconds per call
NETWORK_SETUP_TARGET = 1.0  # seconds, once per sandbox (each iteration and verify command)
STARTUP_TARGET = 0.200
PEERS_STARTUP = "Claude Code's process ~0.7 s, mini-swe-agent's ~4.6 s (design notes)"
# Modules that cost real time to import; none of them should be needed to print help.
HEAVY = ("anthropic", "httpx", "httpx2", "pydantic", "rich", "git", "opentelemetry", "yaml")


def _calls_script(path: Path, calls: int) -> Path:
    bash = [{"bash": {"command": "true"}}] * calls
    view = [{"str_replace_based_edit_tool": {"command": "view", "path": "pkg000/mod00001.py"}}]
    turns = [
        {"text": "Shell calls.", "tools": bash},
        {"text": "Editor views.", "tools": view * calls},
        "Done.",
    ]
    return write_yaml(path, {"iterations": [{"turns": turns}]})


def _per_call(clock: Clock, tool: str) -> tuple[list[float], list[float]]:
    """Seconds between consecutive tool_started events of `tool` (the whole cost of a call in
    the loop: the tool, its two events, the journal), and the tools' own durations."""
    starts = [
        at for at, name, _, data in clock.marks if name == "tool_started" and data["tool"] == tool
    ]
    own = [
        float(data["duration_s"])
        for _, name, _, data in clock.marks
        if name == "tool_finished" and data["tool"] == tool
    ]
    return [b - a for a, b in itertools.pairwise(starts)], own


def tool_calls(s: Settings) -> list[Row]:
    """Figure 2: `bash true` and an editor `view`, without and with bubblewrap."""
    from ralph.run.runner import execute
    from ralph.tools.probe import bwrap_problem

    repo = make_repo(s.work / "repo-tools", 200)
    script = _calls_script(s.work / "calls.yaml", s.tool_calls + 1)
    rows = []
    # The sandbox's network modes (on: its own namespace through pasta) cost differently.
    for sandbox, network in (("none", "on"), ("bwrap", "on"), ("bwrap", "host"), ("bwrap", "off")):
        problem = bwrap_problem() if sandbox == "bwrap" else None
        name = sandbox if sandbox == "none" else f"{sandbox}, network {network}"
        if problem:
            for tool in ("bash true", "editor view"):
                rows.append(Row(2, f"{tool}, sandbox {name}", None, "ms", "-", "SKIP", problem))
            continue
        clock = Clock()
        with silenced():
            execute(run_config(repo, script, 1, sandbox=sandbox, network=network), [clock])
        git(repo, "checkout", "-q", "main")
        limit = TOOL_TARGETS[sandbox]
        tools = [("bash", "bash true")]
        if network == "on":
            tools.append(("str_replace_based_edit_tool", "editor view"))
        for tool, label in tools:
            in_loop, own = _per_call(clock, tool)
            value = median(in_loop)
            rows.append(
                Row(
                    2,
                    f"{label}, sandbox {name}",
                    ms(value),
                    "ms",
                    f"< {ms(limit):.0f} ms",
                    verdict(value < limit),
                    f"per call in a run (tool + events + journal), median of {len(in_loop)}; "
                    f"the tool alone {ms(median(own)):.2f} ms",
                    {"tool_only_ms": ms(median(own)), "samples": len(in_loop)},
                )
            )
    rows.append(_network_setup())
    return rows


def _network_setup(samples: int = 5) -> Row:
    """The one-time cost of the sandbox's own network: namespace, pasta, blackhole routes."""
    import time

    from ralph.tools.netns import UserNet, network_problem

    label = "network namespace set-up (once per sandbox)"
    problem = network_problem()
    if problem:
        return Row(2, label, None, "ms", "-", "SKIP", problem)
    costs = []
    for _ in range(samples):
        net = UserNet()
        started = time.perf_counter()
        net.start()
        costs.append(time.perf_counter() - started)
        net.close()
    value = median(costs)
    return Row(
        2,
        label,
        ms(value),
        "ms",
        f"< {ms(NETWORK_SETUP_TARGET):.0f} ms",
        verdict(value < NETWORK_SETUP_TARGET),
        f"unshare + pasta + ip, median of {samples}",
    )


def _imported(args: list[str], cwd: Path) -> list[str]:
    """The heavy modules a CLI invocation imports, run in a fresh interpreter."""
    entry = "main" if args[0] == "ralph" else "loop_main"
    # The entry point leaves by os._exit after the atexit hooks: report from one.
    code = (
        "import atexit, sys, json\n"
        f"sys.argv = {args!r}\n"
        f"from ralph.cli import {entry}\n"
        f"heavy = {HEAVY!r}\n"
        "def report():\n"
        "    found = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "    sys.stderr.write('IMPORTED ' + json.dumps(found) + '\\n')\n"
        "atexit.register(report)\n"
        f"{entry}()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    for line in proc.stderr.splitlines():
        if line.startswith("IMPORTED "):
            found: list[str] = json.loads(line.removeprefix("IMPORTED "))
            return found
    raise RuntimeError(f"{' '.join(args)} did not finish: {proc.stderr.strip()[-1000:]}")


def _slowest_imports(args: list[str], cwd: Path, top: int = 4) -> str:
    """The packages whose modules cost most to import (python -X importtime, self time)."""
    entry = "main" if args[0] == "ralph" else "loop_main"
    code = (
        f"import sys; sys.argv = {args!r}\n"
        f"from ralph.cli import {entry}\n"
        f"try: {entry}()\n"
        "except SystemExit: pass"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    costs: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            package = parts[2].strip().split(".")[0]
            costs[package] = costs.get(package, 0) + int(parts[0])
    ranked = sorted(costs.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in ranked)


def startup(s: Settings) -> list[Row]:
    """Figure 3: `ralph-loop --help` and `ralph runs` (in a repository with a journal)."""
    from ralph.run.runner import execute

    journal_repo = make_repo(s.work / "repo-journal", 20)
    script = write_yaml(s.work / "journal.yaml", {"iterations": [{"turns": ["Nothing to do."]}]})
    with silenced():
        execute(run_config(journal_repo, script, 2))
    rows = []
    for args in (["ralph-loop", "--help"], ["ralph", "runs"]):
        script = BIN / args[0]
        if not script.exists():  # not run with the venv's python: the one on PATH
            script = Path(shutil.which(args[0]) or script)
        argv = [str(script), *args[1:]]

        def once(argv: list[str] = argv) -> None:
            subprocess.run(argv, cwd=journal_repo, capture_output=True, check=True, timeout=60)

        value = median(timed(once, s.startup_runs))
        imported = _imported(args, journal_repo)
        ok = value < STARTUP_TARGET and "anthropic" not in imported
        costliest = (
            "" if s.quick else f"; costliest imports: {_slowest_imports(args, journal_repo)}"
        )
        rows.append(
            Row(
                3,
                f"start-up: {' '.join(args)}",
                ms(value),
                "ms",
                f"< {ms(STARTUP_TARGET):.0f} ms, no anthropic",
                verdict(ok),
                f"anthropic imported: {'yes' if 'anthropic' in imported else 'no'}; heavy "
                f"modules loaded: {', '.join(imported) or 'none'}{costliest}; for comparison "
                f"{PEERS_STARTUP}",
                {"imported": imported},
            )
        )
    return rows

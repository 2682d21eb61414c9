"""The same scripted job with each agent: the built-in one, Claude Code and Codex (issue 17).

    .venv/bin/python benchmarks/agents.py              # 5 iterations, the README table
    .venv/bin/python benchmarks/agents.py --iterations 1 --json

Each agent runs `ralph-loop` on a fresh repository against a local API server (the
Messages API server for the built-in agent and Claude Code, the Responses API server for
Codex) that plays the same job: per iteration, two commands and a final message (three
model calls), a promise in the last one. Reported per agent: requests, mean bytes per
request, billed input tokens (input + cache writes + cache reads, as the servers count
them: JSON bytes / 4), wall time of the run, and the peak RSS of its process tree (the
runner, sandbox, agent CLI and commands together). An agent whose CLI is not installed is
skipped. The wall time includes each iteration's commit and, for the CLIs, their start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakeapi import FakeAPI, Message, text, tool_use  # noqa: E402
from tests.fakeresponses import (  # noqa: E402
    FakeResponses,
    Response,
    function_call,
    message,
    write_codex_home,
)
from tests.helpers import make_repo  # noqa: E402

BIN = Path(sys.executable).parent
PROMPT = "Harden this repository, one file per iteration. When done: <promise>DONE</promise>.\n"


def commands(i: int) -> list[str]:
    return ["cat app.py && ls", f"echo 'note {i}' >> NOTES.md"]


def final(i: int, last: int) -> str:
    return f"Iteration {i}: noted." + (" <promise>DONE</promise>" if i == last else "")


def anthropic_replies(iterations: int, bash: str) -> list[Message]:
    replies = []
    for i in range(1, iterations + 1):
        for cmd in commands(i):
            tool_input = {"command": cmd} | ({"description": "run"} if bash == "Bash" else {})
            replies.append(Message([text("Checking."), tool_use(bash, tool_input)]))
        replies.append(Message(final(i, iterations)))
    return replies


def responses_replies(iterations: int) -> list[Response]:
    replies = []
    for i in range(1, iterations + 1):
        for cmd in commands(i):
            replies.append(
                Response([message("Checking."), function_call("exec_command", {"cmd": cmd})])
            )
        replies.append(Response([message(final(i, iterations))]))
    return replies


def tree_rss_kb(root: int) -> int:
    """The summed resident memory of `root` and all its descendants, in KB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry)] = int(fields.get("PPid", "0").strip() or 0)
        rss[int(entry)] = int((fields.get("VmRSS") or "0 kB").split()[0])
    total = 0
    for pid in rss:
        walk = pid
        while walk and walk != root:
            walk = parents.get(walk, 0)
        if walk == root:
            total += rss[pid]
    return total


def run_ralph(repo: Path, prompt: Path, env: dict[str, str], *args: str) -> tuple[int, float, int]:
    """Exit code, wall seconds and the peak RSS (KB) of the run's whole process tree (the
    runner, the sandbox, the agent CLI and its commands), sampled every 50 ms."""
    cmd = [str(BIN / "ralph-loop"), str(prompt), "--repo", str(repo), "--log-format", "plain",
           "--max-iterations", "20", *args]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kb(proc.pid))
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    assert proc.stderr is not None
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-3000:])
    return proc.returncode, elapsed, peak


def measure(agent: str, iterations: int, work: Path) -> dict[str, Any]:
    repo = make_repo(work / agent / "repo", {"README.md": "# app\n", "app.py": "DEBUG = True\n"})
    prompt = work / agent / "prompt.md"
    prompt.write_text(PROMPT)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RALPH_", "ANTHROPIC_", "OPENAI_", "CODEX_"))
    }
    if agent == "codex":
        server: Any = FakeResponses().start()
        server.add(*responses_replies(iterations))
        env.update(CODEX_HOME=str(write_codex_home(work / agent / "codex", server, "gpt-5.5")),
                   OPENAI_API_KEY="sk-bench")  # fmt: skip
        bodies = lambda: [r.body for r in server.requests]  # noqa: E731
        tokens = lambda: sum(len(b) // 4 for b in bodies())  # noqa: E731
    else:
        server = FakeAPI(auto_cache=True, min_cache_tokens=1024).start()
        server.add(*anthropic_replies(iterations, "Bash" if agent == "claude-code" else "bash"))
        env.update(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY="sk-ant-bench")
        bodies = lambda: [r.body for r in server.requests]  # noqa: E731

        def tokens() -> int:
            keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            return sum(u[k] for u in server.usages for k in keys)

    try:
        code, wall, rss = run_ralph(repo, prompt, env, "--agent", agent)
        sent = bodies()
        return {
            "agent": agent,
            "exit_code": code,
            "requests": len(sent),
            "bytes_per_request": round(sum(map(len, sent)) / max(1, len(sent))),
            "billed_input_tokens": tokens(),
            "wall_s": round(wall, 2),
            "peak_rss_mb": round(rss / 1024, 1),
        }
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    agents = ["builtin"]
    agents += [
        name
        for name, binary in (("claude-code", "claude"), ("codex", "codex"))
        if shutil.which(binary)
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ralph-bench-agents-") as scratch:
        for agent in agents:
            rows.append(measure(agent, args.iterations, Path(scratch)))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| agent | requests | bytes / request | billed input tokens | wall time | peak RSS |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['agent']} | {r['requests']} | {r['bytes_per_request']:,} | "
                  f"{r['billed_input_tokens']:,} | {r['wall_s']:.1f} s | {r['peak_rss_mb']:.0f} MB |")  # fmt: skip
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

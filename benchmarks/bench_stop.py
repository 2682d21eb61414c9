"""Figure 8: how long the real CLI takes to stop on SIGTERM while its model request hangs
(the real SDK against tests/fakeapi.py): GitHub Actions cancels a job with SIGINT, SIGTERM
7.5 s later and SIGKILL 2.5 s after that. The signal tests check that a stop never waits for
what hangs; this is where its speed is measured, on a quiet machine."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from common import BIN, Row, Settings, make_repo, median, verdict

STOP_TARGET = 5.0  # seconds
KEY = "sk-ant-api03-bench-stop-key-000000000000"
PROMPT = "Harden this repository. When all is done, output <promise>DONE</promise>."


def _one_stop(repo: Path) -> float:
    """Start a run whose first model request hangs, SIGTERM it there; seconds to exit 130."""
    from tests.fakeapi import FakeAPI, Stall

    with FakeAPI(api_key=KEY) as api:
        api.add(Stall(None))
        env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
        env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=KEY)
        argv = [str(BIN / "ralph-loop"), PROMPT, "--sandbox", "none", "--max-iterations", "1"]
        proc = subprocess.Popen(
            argv, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while not api.requests:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the run never sent its request (exit {proc.poll()})")
                time.sleep(0.01)
            time.sleep(0.2)  # inside the hung request
            started = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
            took = time.perf_counter() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if code != 130:
        raise RuntimeError(f"the run exited {code} on SIGTERM, not 130")
    return took


def stop_on_signal(s: Settings) -> list[Row]:
    runs = 1 if s.quick else 5
    samples = [_one_stop(make_repo(s.work / "stop" / f"repo{n}", 10)) for n in range(runs)]
    took = median(samples)
    return [
        Row(
            8,
            "stop on SIGTERM during a hung model request",
            took,
            "s",
            f"< {STOP_TARGET:g} s",
            verdict(took < STOP_TARGET),
            f"median of {runs}: signal to exit 130, with the iteration recorded and the journal "
            "closed; GitHub Actions sends SIGTERM 7.5 s after SIGINT, SIGKILL 2.5 s later",
        )
    ]

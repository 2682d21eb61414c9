"""Figure 9: start and exit of a real run, the real `ralph-loop` with the real `anthropic`
SDK against tests/fakeapi.py: from launch to the first model request (the SDK's import
overlaps the run's set-up), and from the last byte of the summary to the process's exit
(no interpreter teardown). Both on a 5-iteration run, as a user sees it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from common import BIN, Row, Settings, make_repo, median, ms, verdict

FIRST_REQUEST_TARGET = 0.5  # seconds from launch to the first model request
EXIT_TARGET = 0.1  # seconds from the end of the summary to the process's exit
ITERATIONS = 5
KEY = "sk-ant-api03-bench-start-key-00000000000"
PROMPT = "Harden this repository. When all is done, output <promise>DONE</promise>."


def _last_output(stream: IO[bytes], times: list[float]) -> None:
    """Read `stream` to its end, noting when each chunk arrived."""
    while chunk := os.read(stream.fileno(), 65536):
        del chunk
        times.append(time.monotonic())


def _one_run(repo: Path) -> tuple[float, float, float]:
    """Seconds from launch to the first request, from the last output to exit, and in all."""
    from tests.fakeapi import FakeAPI, Message

    with FakeAPI(api_key=KEY) as api:
        for n in range(1, ITERATIONS):
            api.add(Message(f"Iteration {n}: nothing left to change here."))
        api.add(Message("Done. <promise>DONE</promise>"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
        # Unbuffered, so the summary's last line leaves the process when it is printed.
        env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=KEY, PYTHONUNBUFFERED="1")
        argv = [str(BIN / "ralph-loop"), PROMPT, "--sandbox", "none", "--max-iterations", "9"]
        argv += ["--stall-limit", "0"]
        launched = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        times: list[float] = []
        reader = threading.Thread(target=_last_output, args=(proc.stdout, times), daemon=True)
        reader.start()
        code = proc.wait(timeout=300)
        exited = time.monotonic()
        reader.join(timeout=60)
        proc.stdout.close()
        if code != 0 or len(api.requests) != ITERATIONS or not times:
            raise RuntimeError(f"the run exited {code} after {len(api.requests)} requests")
        first = api.requests[0].at
    return first - launched, exited - times[-1], exited - launched


def start_and_exit(s: Settings) -> list[Row]:
    runs = 2 if s.quick else 9
    samples = [_one_run(make_repo(s.work / "start" / f"repo{n}", 10)) for n in range(runs)]
    first = median([x[0] for x in samples])
    leave = median([x[1] for x in samples])
    whole = median([x[2] for x in samples])
    try:
        load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        load = "load average unknown"
    return [
        Row(
            9,
            "start: launch to the first model request",
            ms(first),
            "ms",
            f"<= {ms(FIRST_REQUEST_TARGET):.0f} ms",
            verdict(first <= FIRST_REQUEST_TARGET),
            f"median of {runs} runs of ralph-loop with the real anthropic SDK (imported in a "
            f"background thread during set-up) against a local server; a {ITERATIONS}-"
            f"iteration run takes {whole:.2f} s in all; {load}",
        ),
        Row(
            9,
            "exit: end of the summary to the process's exit",
            ms(leave),
            "ms",
            f"<= {ms(EXIT_TARGET):.0f} ms",
            verdict(leave <= EXIT_TARGET),
            f"median of {runs}: journal closed, report written and summary flushed, then "
            "os._exit without the interpreter's teardown",
        ),
    ]

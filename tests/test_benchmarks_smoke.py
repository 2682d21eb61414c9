"""The benchmark script runs end to end in its small `--quick` form and prints every figure.

No timing is asserted here: CI machines are noisy and shared. `benchmarks/run.py` without
--quick is where the targets are checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import HANG, clean_env

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^(\d)\s{2}(\S.*?)\s{2,}(\S.*?)\s{2,}(.+?)\s{2,}(PASS|FAIL|INFO|SKIP|ERROR)$")


# The figures in three groups of similar length, run at once: much of each is waiting (on
# processes starting, a stop, a retry), which the others fill; nothing here is timed.
GROUPS = ["9,3", "4,5,8", "1,6,2,7"]  # 4 is measured with 5


def test_quick_benchmarks_print_a_row_for_every_figure(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", group],
            cwd=tmp_path,  # the script finds the repository itself
            env=clean_env(TMPDIR=str(tmp_path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in GROUPS
    ]
    rows = []
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=HANG)
            outputs.append(stdout + stderr)
            assert proc.returncode == 0, stdout + stderr
            rows += [m.groups() for line in stdout.splitlines() if (m := ROW.match(line))]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = "\n".join(outputs)
    assert {int(r[0]) for r in rows} == {1, 2, 3, 4, 5, 6, 7, 8, 9}, output
    assert len(rows) == len(set(rows)), output  # each figure's rows once
    assert not [r for r in rows if r[4] == "ERROR"], output
    measured = {r[1]: r[2] for r in rows if r[4] != "SKIP"}
    assert all(value != "-" for value in measured.values()), output
    # The scratch directory (repositories, journals) is removed afterwards.
    assert not list(tmp_path.glob("ralph-bench-*")), list(tmp_path.iterdir())

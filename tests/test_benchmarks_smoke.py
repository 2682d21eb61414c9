"""The benchmark script runs end to end in its small `--quick` form and prints every figure.

No timing is asserted here: CI machines are noisy and shared. `benchmarks/run.py` without
--quick is where the targets are checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^(\d)\s{2}(\S.*?)\s{2,}(\S.*?)\s{2,}(.+?)\s{2,}(PASS|FAIL|INFO|SKIP|ERROR)$")


def test_quick_benchmarks_print_a_row_for_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
        cwd=tmp_path,  # the script finds the repository itself
        env=clean_env(TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [m.groups() for line in proc.stdout.splitlines() if (m := ROW.match(line))]
    assert {int(r[0]) for r in rows} == {1, 2, 3, 4, 5, 6, 7, 8, 9}, proc.stdout
    assert not [r for r in rows if r[4] == "ERROR"], proc.stdout + proc.stderr
    measured = {r[1]: r[2] for r in rows if r[4] != "SKIP"}
    assert all(value != "-" for value in measured.values()), proc.stdout
    # The scratch directory (repositories, journals) is removed afterwards.
    assert not list(tmp_path.glob("ralph-bench-*")), list(tmp_path.iterdir())

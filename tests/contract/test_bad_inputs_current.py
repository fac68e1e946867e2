"""docs/bad-inputs.md lists exactly the bad inputs the tests check (run `python -m tools.bad_inputs` if not)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bad_input_table_is_current():
    checked = subprocess.run([sys.executable, "-m", "tools.bad_inputs", "--check"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert checked.returncode == 0, checked.stderr[-3000:]

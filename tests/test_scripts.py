"""The scripts in docs/ and benchmarks/ do their work only when run.

`pytest .` (or any run that names the repository root) imports every .py file under
--doctest-modules; a script that worked on import regenerated docs/before_after.jpg there.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(ROOT.glob("docs/*.py")) + sorted(ROOT.glob("benchmarks/*.py"))


def outputs() -> dict:
    return {p: p.stat().st_mtime_ns for folder in ("docs", "benchmarks") for p in (ROOT / folder).iterdir()}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_importing_a_script_runs_nothing(script):
    before = outputs()
    run = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(script)!r}, run_name='imported')"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == ""
    assert outputs() == before

"""The README's test command (plain ``pytest``) runs the packages' docstring examples too."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_plain_pytest_collects_the_docstring_examples_of_both_packages_and_no_scripts():
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ids = r.stdout.splitlines()
    assert "livesharp/ops.py::livesharp.ops.unsharp_mask" in ids
    assert "train/teachers.py::train.teachers.make_teacher" in ids
    assert not [i for i in ids if i.startswith(("docs/", "benchmarks/"))]

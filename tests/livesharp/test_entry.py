"""The ``livesharp`` entry point (livesharp/__main__.py:main): Ctrl-C before the CLI exists."""

import subprocess
import sys

# A Ctrl-C that lands while the CLI's modules load: the import of click raises
# KeyboardInterrupt exactly as a real SIGINT at that moment would (a real signal's timing
# cannot be aimed at an import reliably).
CTRL_C_WHILE_IMPORTING = """
import builtins, sys
real = builtins.__import__
def interrupting(name, *args, **kwargs):
    if name == "click":
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = interrupting
sys.argv = ["livesharp", "--version"]
from livesharp.__main__ import main
main()
"""


def test_ctrl_c_during_start_up_is_one_line_and_exit_130():
    r = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_IMPORTING], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130
    assert r.stderr.strip() == "interrupted: stopped during start-up; nothing was written"
    assert "Traceback" not in r.stderr


def test_the_entry_point_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "livesharp", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("livesharp, version")

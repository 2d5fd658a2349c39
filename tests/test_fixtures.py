"""The suite's own fixtures do what the tests that rely on them assume."""

import _thread
import signal
import subprocess
import sys
import time

import pytest


@pytest.fixture
def sigint_ignored():
    """SIGINT as a job started in the background without job control begins: ignored."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_reaches_the_test_and_the_processes_it_starts_when_the_suite_began_with_it_ignored(sigint_ignored, ctrl_c):
    # Without the fixture both checks fail under `pytest &`, and the Ctrl-C tests test nothing.
    with pytest.raises(KeyboardInterrupt):
        _thread.interrupt_main()
        time.sleep(5)  # delivered at the next bytecode boundary, well before this ends
    child = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "True"

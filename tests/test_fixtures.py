"""The suite's own fixtures do what the tests that rely on them assume."""

import _thread
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


def test_exports_go_to_a_cache_of_the_sessions_own():
    cache = Path(os.environ["LIVESHARP_CACHE"])
    assert cache.is_dir() and cache.name.startswith("livesharp-test-cache-")
    if os.environ.get("LIVESHARP_PROBE"):  # for the test below
        Path(os.environ["LIVESHARP_PROBE"]).write_text(str(cache))


def test_the_sessions_cache_is_removed_when_it_ends(tmp_path):
    probe = tmp_path / "cache"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::test_exports_go_to_a_cache_of_the_sessions_own"],
                       cwd=ROOT, env={**os.environ, "LIVESHARP_PROBE": str(probe)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    theirs = Path(probe.read_text())
    assert theirs != Path(os.environ["LIVESHARP_CACHE"]) and Path(os.environ["LIVESHARP_CACHE"]).is_dir()
    assert not theirs.exists(), "the graphs a test session exported are left behind"

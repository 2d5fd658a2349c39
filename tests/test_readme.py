"""The README's first code block is what a newcomer types on a fresh machine: it must work as
written.

The block is read from README.md and run by bash, line for line, in a folder where ``livesharp``
is a copy of the source tree (so its ``cd livesharp`` works), with ``python3`` meaning the
interpreter running the tests and nothing of the checkout's environment visible. It makes a
venv, installs from the source folder with the package index (pip's configured one) and runs
``livesharp demo``, so it is marked like the wheel test.
"""

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_wheel import NOT_SOURCE, ROOT


def first_code_block(markdown: str) -> tuple[str, str]:
    """The language and the text of the first fenced code block.

    >>> first_code_block("# t\\n\\n```bash\\necho hi\\n```\\n\\n```python\\nx\\n```\\n")
    ('bash', 'echo hi\\n')
    """
    m = re.search(r"^```(\w*)\n(.*?)^```", markdown, re.S | re.M)
    assert m, "no fenced code block"
    return m.group(1), m.group(2)


@pytest.mark.wheel
def test_the_readmes_first_code_block_installs_from_the_source_folder_and_runs_the_demo(tmp_path):
    if importlib.util.find_spec("ensurepip") is None:
        pytest.skip("this Python cannot make a venv with pip (no ensurepip; on Debian: apt install python3-venv)")
    lang, block = first_code_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert lang == "bash" and "livesharp demo" in block

    home = tmp_path / "home"
    shutil.copytree(ROOT, home / "livesharp", ignore=NOT_SOURCE)
    # `python3` is this interpreter; a shim, not a symlink, so that a venv interpreter keeps its venv.
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shims / "python3").chmod(stat.S_IRWXU)
    # No folder that already holds a `livesharp` command (the checkout's editable install): the
    # block's own venv must provide it. No display, so the demo has no preview window to wait on.
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "livesharp").exists()]
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LIVESHARP_MODELS", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(PATH=os.pathsep.join([str(shims), *path]), LIVESHARP_CACHE=str(tmp_path / "cache"))

    r = subprocess.run(["bash", "-e", "-c", block], cwd=home, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"{block}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"

    src = home / "livesharp"
    assert (src / ".venv" / "bin" / "livesharp").is_file()  # the command came from the block's venv
    out = src / "livesharp-demo"
    assert (out / "livesharp_demo.mp4").stat().st_size > 10_000
    assert (out / "livesharp_demo.png").stat().st_size > 10_000

"""The installed product: the wheel, installed without extras into a fresh venv, sharpens with the
shipped model from any directory, and never imports torch.

Everything else in the suite runs from the checkout, with the dev extras. This builds the wheel
from a copy of the source tree, installs it into a venv that has no torch and cannot see the
checkout, and runs the ``livesharp`` command there as a user would. It needs the package index
(pip's configured one) for the base dependencies; pip's cache makes later runs quick.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the copy of the source tree leaves out: history, build outputs, runs and other big local folders.
NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".venv*", "runs", "teachers", "cache", "livesharp-demo")
# Runs the CLI, then fails if torch got imported on the way.
CLI_WITHOUT_TORCH = """
import sys
from livesharp.cli import cli
try:
    cli(sys.argv[1:])
except SystemExit as e:
    code = e.code
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}"
    return r


def build_wheel(out: Path, tmp: Path) -> Path:
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    # Without build isolation where setuptools is at hand: no download of it for each run.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", out, src)
    (wheel,) = out.glob("livesharp-*.whl")
    return wheel


@pytest.mark.wheel
def test_the_wheel_installs_without_torch_and_sharpens_from_anywhere(tmp_path, video_with_audio, probe):
    if importlib.util.find_spec("ensurepip") is None:
        pytest.skip("this Python cannot make a venv with pip (no ensurepip; on Debian: apt install python3-venv)")
    wheel = build_wheel(tmp_path / "dist", tmp_path)

    # Only livesharp, with its weights as package data; no top-level train.
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"livesharp"}
    assert {"livesharp/weights/livesharp-tiny.pt", "livesharp/weights/livesharp-tiny.onnx", "livesharp/weights/livesharp-tiny.detail.json",
            "livesharp/data/demo_blurry.mp4"} <= set(names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)  # no system site-packages: nothing of this interpreter's
    py, cli = venv / "bin" / "python", venv / "bin" / "livesharp"
    t = time.perf_counter()
    run(py, "-m", "pip", "install", "--disable-pip-version-check", wheel)
    print(f"base install: {time.perf_counter() - t:.0f} s")
    run(py, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)")  # really no torch

    # From another directory, with nothing of the checkout on the path or in the environment.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIVESHARP_MODELS")}
    env["LIVESHARP_CACHE"] = str(tmp_path / "cache")
    kw = dict(cwd=elsewhere, env=env)
    assert run(cli, "--version", **kw).stdout.startswith("livesharp, version")
    import cv2

    from train.ship import demo_frame

    cv2.imwrite(str(elsewhere / "in.png"), cv2.cvtColor(demo_frame()[:72, :96], cv2.COLOR_RGB2BGR))
    run(cli, "image", "in.png", "out.png", **kw)
    run(py, "-c", CLI_WITHOUT_TORCH, "image", "in.png", "out2.png", **kw)
    run(py, "-c", CLI_WITHOUT_TORCH, "file", video_with_audio, "out.mp4", **kw)
    assert (elsewhere / "out.png").is_file() and (elsewhere / "out2.png").is_file()
    # The clip comes out whole: every frame, the same size, and its audio track copied.
    before, after = probe(video_with_audio), probe(elsewhere / "out.mp4")
    assert (len(after.frames), after.width, after.height) == (len(before.frames), before.width, before.height)
    assert before.audio and after.audio == before.audio
    assert not list((tmp_path / "cache").glob("*.onnx"))  # the shipped graph ran: nothing exported

    r = subprocess.run([cli, "image", "in.png", "out3.png", "--backend", "torch"], capture_output=True, text=True, **kw)
    assert r.returncode == 1 and r.stderr.strip() == 'error: --backend torch needs torch: pip install "livesharp[torch]"'

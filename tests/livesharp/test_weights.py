"""The shipped weights: the graph in livesharp/weights/ is the checkpoint beside it, and the CPU
path runs it without torch.

The checkpoint is the source of truth; the graph is what a base install (no torch) runs, so a
checkpoint shipped without regenerating its graph (``python -m train.ship``) must fail here.
"""

import subprocess
import sys

import numpy as np
import pytest

from livesharp import int8, settings
from livesharp.engine import Sharpener
from livesharp.export import model_digest, variant_of
from livesharp.graph import read_graph
from livesharp.model import load_student
from train.ship import PARITY_GREY_LEVELS, demo_frame, parity

from tests.conftest import int8_weight_range

PT, ONNX = settings.shipped_weights("tiny"), settings.shipped_graph("tiny")


def test_the_shipped_weights_are_package_data():
    assert PT.is_file() and ONNX.is_file()
    assert PT.parent == settings.SHIPPED_MODELS and settings.SHIPPED_MODELS.parent.name == "livesharp"


def test_the_shipped_graph_holds_the_shipped_checkpoint():
    net = load_student(PT)
    graph = read_graph(ONNX)
    assert graph.digest == model_digest(net), "livesharp-tiny.onnx is stale: run python -m train.ship livesharp/weights/livesharp-tiny.pt --name tiny"
    # the architecture's name as the checkpoint gives it (custom where no VARIANTS entry matches)
    assert graph.multiple == net.cfg.multiple and graph.name == "tiny" and graph.variant == variant_of(net)
    assert abs(graph.macs_per_pixel - Sharpener(net, device="cpu", backend="torch").macs_per_pixel) < 1


def test_the_shipped_graph_gives_torch_pictures_on_a_real_frame():
    found = parity(PT, ONNX)
    assert set(found) == {"openvino", "onnx"}  # both are in the dev install
    assert max(found.values()) <= PARITY_GREY_LEVELS, found


def test_the_default_model_on_the_cpu_runs_the_shipped_graph_without_exporting(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVESHARP_CACHE", str(tmp_path / "cache"))
    with Sharpener("tiny", device="cpu", backend="openvino") as s:
        # auto runs the shipped int8 IR where the CPU has VNNI/AMX-INT8, else the shipped graph
        want = int8.int8_path(ONNX) if s.precision == "int8" else ONNX
        assert s.graph.path == ONNX and s.runner.graph == str(want) and s.net is None  # the graph alone: no torch
        s.sharpen(demo_frame()[:64, :96])
    assert not list((tmp_path / "cache").glob("*.onnx"))


def test_the_shipped_int8_graph_was_made_from_the_shipped_graph_and_passed():
    """train.ship wrote it beside the graph; a stale or failed one would never be picked."""
    assert int8.int8_graph(ONNX) == int8.int8_path(ONNX)
    meta = int8.read_metadata(int8.int8_path(ONNX))
    assert float(meta[int8.COST_KEY]) <= 0.05  # issue 16's bar on the real validation pairs


def test_the_shipped_int8_graph_computes_alike_on_cpus_without_vnni():
    """Its weights fit 7 bits (train.quantize.OVERFLOW_FIX), so AVX2's 16-bit sums cannot saturate."""
    low, high = int8_weight_range(int8.int8_path(ONNX))
    assert -64 <= low and high <= 64, (low, high)


def test_a_graph_left_from_other_weights_is_not_used(tmp_path, monkeypatch, random_student):
    from livesharp.model import save_student

    monkeypatch.setenv("LIVESHARP_MODELS", str(tmp_path))
    save_student(random_student(seed=5), tmp_path / "livesharp-tiny.pt")
    (tmp_path / "livesharp-tiny.onnx").write_bytes(ONNX.read_bytes())  # the real tiny's graph: other weights
    with Sharpener("tiny", device="cpu", backend="onnx") as s:
        assert s.graph is None and s.runner.session is not None  # exported from the checkpoint instead


def test_a_graph_of_ones_own_runs_as_model(tmp_path, random_student):
    from livesharp.engine import export_model

    net = random_student(seed=2)
    path = export_model(net, tmp_path / "mine.onnx", io="uint8")
    frame = demo_frame()[:40, :56]
    with Sharpener(str(path), device="cpu", backend="onnx", precision="fp32") as s, Sharpener(net, device="cpu", backend="torch") as ref:
        assert s.net is None and s.name == "mine" and s.macs_per_pixel > 0
        assert np.abs(s.sharpen(frame).astype(int) - ref.sharpen(frame)).max() <= 1


def test_a_float_graph_is_refused_with_how_to_make_one(tmp_path, random_student):
    from livesharp.engine import export_model
    from livesharp.errors import LivesharpError

    path = export_model(random_student(), tmp_path / "float.onnx", io="float")
    with pytest.raises(LivesharpError, match="--io uint8"):
        Sharpener(str(path), device="cpu")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 100)
    with pytest.raises(LivesharpError, match="not an ONNX file"):
        Sharpener(str(tmp_path / "junk.onnx"), device="cpu")


# The CLI in a process where torch cannot be imported (as in a base install), then the proof
# that nothing imported it.
NO_TORCH = """
import sys
sys.modules["torch"] = None  # `import torch` fails and find_spec finds nothing: as if not installed
from livesharp.cli import cli
try:
    cli(sys.argv[1:])
except SystemExit as e:
    code = e.code
assert sys.modules["torch"] is None and not [m for m in sys.modules if m.startswith("torch.")], "torch was imported"
sys.exit(code)
"""


def without_torch(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_import_livesharp_imports_no_torch():
    code = "import sys, livesharp, livesharp.engine, livesharp.pipeline, livesharp.live, livesharp.bench, livesharp.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_image_and_file_run_without_torch(tmp_path, video):
    import cv2

    cv2.imwrite(str(tmp_path / "in.png"), demo_frame()[:48, :64])
    r = without_torch("image", tmp_path / "in.png", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    r = without_torch("file", video, tmp_path / "out.mp4")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.png").is_file() and (tmp_path / "out.mp4").is_file()


@pytest.mark.parametrize("args, what", [
    (["--backend", "torch"], "--backend torch"),
    (["--device", "cuda"], "--device cuda"),
    (["--model", str(PT)], "a checkpoint (.pt)"),
])
def test_what_needs_torch_says_which_extra_in_one_line(tmp_path, args, what):
    import cv2

    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((40, 40, 3), np.uint8))
    r = without_torch("image", tmp_path / "in.png", tmp_path / "out.png", *args)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f'error: {r.stderr.split("error: ")[1].strip()}']
    assert what in r.stderr and 'needs torch: pip install "livesharp[torch]"' in r.stderr


def test_export_without_torch_is_one_line(tmp_path):
    r = without_torch("export", "tiny", tmp_path / "t.onnx")
    assert r.returncode == 1 and r.stderr.strip() == 'error: livesharp export needs torch: pip install "livesharp[torch]"'

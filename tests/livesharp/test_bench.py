"""``livesharp bench``: a real (tiny) run through every backend, checked for its schema and sense."""

import json

import pytest
from click.testing import CliRunner

from livesharp import int8
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
            assert b["time_vs_io_floor"] == pytest.approx(size["io_floor_fps"] / b["end_to_end_fps"])  # time ratio, as the README quotes
            assert b["inference_vs_torch"] == pytest.approx(b["inference_fps"] / size["backends"]["torch"]["inference_fps"])
        assert size["backends"]["torch"]["inference_vs_torch"] == 1
        # auto under OpenVINO chose between the shipped int8 graph and the float one by timing them
        m = size["backends"]["openvino"]["precision_measured"]
        assert m["chosen"] == size["backends"]["openvino"]["precision"] and set(m["ms"]) == {"int8", int8.float_precision()}
        assert size["backends"]["onnx"]["precision_measured"] is None
        lv = size["live"]
        assert lv["backend"] == "openvino" and lv["fps"] == 30 and set(lv["scale_ms"]) == {"1", "0.75", "0.5", "0.375"}
        assert lv["scale"] in (1.0, 0.75, 0.5, 0.375) and lv["gain_db"] == {1.0: 0.824, 0.75: 0.675, 0.5: 0.394, 0.375: 0.219}[lv["scale"]]
    assert data["cpu_kind"] in ("AMX", "AVX-512 VNNI", "AVX-512", "AVX-VNNI", "AVX2", "other")


def test_the_table_names_the_cpu_kind_the_precision_choice_and_the_live_scale():
    from livesharp.bench import format_table

    result = {"livesharp": "0", "torch": None, "device": "cpu", "gpu": None, "cpu": "AMD EPYC", "cpu_kind": "AVX2", "cores": 2,
              "model": "tiny", "batch": 1, "file_batch": 4, "runs": 3, "preset": "medium", "sizes": {"1280x720": {
                  "decode_ms": 3.0, "encode_ms": 20.0, "io_floor_fps": 40.0,
                  "backends": {"openvino": {"precision": "int8", "upload_ms": 0.0, "inference_ms": 45.0, "download_ms": 0.0, "model_fps": 22.2,
                                            "gflops": 100.0, "end_to_end_fps": 15.0, "time_vs_io_floor": 2.67, "inference_vs_torch": None,
                                            "precision_measured": {"chosen": "int8", "ms": {"fp32": 52.0, "int8": 45.0}, "size": "1280x720",
                                                                   "cached": False}}},
                  "live": {"backend": "openvino", "fps": 30, "scale_ms": {"1": 45.0, "0.75": 26.0, "0.5": 13.0}, "scale": 0.75,
                           "gain_db": 0.675, "gain_db_full": 0.824}}}}
    table = format_table(result)
    assert "(AMD EPYC, AVX2, 2 cores)" in table
    assert "openvino --precision auto: int8, measured fp32 52.0 ms, int8 45.0 ms per frame at 1280x720" in table
    assert "cam at 30 FPS (openvino): --scale auto starts at 0.75 (1: 45.0 ms, 0.75: 26.0 ms, 0.5: 13.0 ms); gain +0.675 dB against +0.824" in table


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
    assert "GFLOP/s" in header and "time÷floor" in header
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

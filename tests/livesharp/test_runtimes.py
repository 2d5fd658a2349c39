"""Tests for livesharp/runtimes.py: ONNX Runtime and OpenVINO give torch's output, exports round
trip, ``auto`` falls back when an extra is missing, and the export cache is reused.

Both runtimes are in the ``dev`` extra, so these run for real in CI. A missing extra is
simulated by hiding the module (``sys.modules[name] = None`` makes it unimportable, exactly as
if it were not installed).
"""

import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from livesharp import engine, runtimes
from livesharp.cli import cli
from livesharp.engine import Sharpener
from livesharp.errors import LivesharpError
from livesharp.export import cached_graph
from livesharp.graph import cache_dir
from livesharp.model import save_student

CPU = torch.device("cpu")
RUNTIMES = ["onnx", "openvino"]


def frames(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def hide(monkeypatch, *modules):
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def run_float_graph(backend, path, x: np.ndarray) -> np.ndarray:
    """Run an exported float graph (ONNX file or OpenVINO IR) the way a deployer would."""
    if backend == "onnx":
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    from livesharp.graph import openvino
    ov = openvino()

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled({0: x})[0]


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("openvino", ".xml")])
@pytest.mark.parametrize("variant, h, w", [("tiny", 37, 50), ("tiny", 64, 96), ("tiny", 33, 71), ("conv32", 37, 50), ("conv32", 33, 71)])
def test_export_round_trip_matches_torch_within_1e3(tmp_path, random_student, fmt, suffix, variant, h, w):
    net = random_student(variant, seed=1)  # conv32: dense blocks and the zero-mean residual
    ckpt = tmp_path / "net.pt"
    save_student(net, ckpt)
    out = tmp_path / f"exported{suffix}"
    result = CliRunner().invoke(cli, ["export", str(ckpt), str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and (fmt == "onnx" or out.with_suffix(".bin").is_file())
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
    with torch.no_grad():
        ref = net(x).numpy()
    got = run_float_graph(fmt, out, x.numpy())
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-3
    assert np.abs(ref - x.numpy()).max() > 0.05  # the student really changes the picture


@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("strength", [1.0, 0.5, 1.7])
@pytest.mark.parametrize("h, w", [(37, 45), (48, 64), (9, 13)])
def test_runtime_frames_match_torch_frames(backend, strength, h, w, random_student, threads):
    # small: no zero-mean residual; frames under the multiple with one: the test below.
    batch = frames(3, h, w)
    with Sharpener(random_student("small"), device="cpu", backend="torch", strength=strength) as ref:
        want = ref.sharpen_batch(batch)
    with Sharpener(random_student("small"), device="cpu", backend=backend, strength=strength, precision="fp32") as s:
        assert s.backend == backend and s.precision == "fp32"
        got = s.sharpen_batch(batch)
        one = s.sharpen(batch[1])  # another batch size: OpenVINO compiles it anew
    assert any(np.abs(a.astype(int) - f).max() > 10 for a, f in zip(want, batch))
    for a, b in zip(want, got):
        assert a.shape == b.shape == (h, w, 3) and b.dtype == np.uint8
        # Same float graph, another runtime: a rounding boundary may fall either way.
        assert np.abs(a.astype(int) - b).max() <= 1
    assert np.abs(one.astype(int) - got[1]).max() <= 1  # batch size changes kernels, not results


@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("h, w", [(9, 13), (20, 45)])  # 20 x 45: one side under the multiple (32), one over
def test_zero_mean_runtime_frames_smaller_than_the_multiple_match_torch(backend, h, w, random_student, threads):
    batch = frames(2, h, w)
    with Sharpener(random_student("tiny"), device="cpu", backend="torch") as ref:
        want = ref.sharpen_batch(batch)
    with Sharpener(random_student("tiny"), device="cpu", backend=backend, precision="fp32") as s:
        got = s.sharpen_batch(batch)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(want, got)) <= 1


def test_auto_precision_stays_close_to_fp32_on_the_shipped_model(threads):
    # The shipped model on a real frame of the packaged demo clip: what a user's picture gets.
    from livesharp.bench import DEMO_CLIP
    from livesharp.io import VideoReader

    frame = next(iter(VideoReader(DEMO_CLIP).frames())).rgb
    with Sharpener("tiny", device="cpu", backend="openvino", precision="fp32") as exact, Sharpener("tiny", device="cpu", backend="openvino") as fast:
        b = fast.sharpen(frame).astype(int)  # auto chooses at the first frame, timing int8 against the float graph
        if fast.precision == "fp32":
            pytest.skip("auto chose fp32 here (no native bf16, and int8 timed no faster): the same as exact")
        assert exact.precision == "fp32" and exact.runner.config["INFERENCE_PRECISION_HINT"] == "f32"
        a = exact.sharpen(frame).astype(int)
    # the model changes the picture (v2 leaves far more alone than v1: 0.21 grey levels on
    # average on this frame, against v1's > 0.5), so the comparison below is not trivial
    assert np.abs(a - frame).mean() > 0.1
    diff = np.abs(a - b)
    if fast.precision == "bf16":
        assert diff.max() <= 2 and diff.mean() < 0.2
    else:  # int8: the tolerance of tests/livesharp/test_int8.py (its quality cost is on the model card)
        assert fast.precision == "int8" and diff.mean() <= 1.0 and np.percentile(diff, 99) <= 4, (diff.mean(), np.percentile(diff, 99))


def test_torch_precision_is_fp32_on_the_cpu_and_bad_values_are_refused(random_student, threads):
    with Sharpener(random_student(), device="cpu", backend="torch") as s:
        assert s.precision == "fp32"
    with pytest.raises(LivesharpError, match=r"--precision half: use auto, fp32 or int8"):
        Sharpener(random_student(), device="cpu", backend="torch", precision="half")


def test_auto_prefers_openvino_then_onnx_then_torch(monkeypatch):
    assert runtimes.choose_backend("auto", CPU) == "openvino"
    hide(monkeypatch, "openvino")
    assert runtimes.choose_backend("auto", CPU) == "onnx"
    hide(monkeypatch, "onnxruntime")
    assert runtimes.choose_backend("auto", CPU) == "torch"


def test_auto_uses_torch_on_cuda():
    assert runtimes.choose_backend("auto", torch.device("cuda")) == "torch"


def test_auto_without_extras_runs_torch(monkeypatch, random_student, threads):
    hide(monkeypatch, "openvino", "onnxruntime")
    with Sharpener(random_student(), device="cpu") as s:
        assert s.backend == "torch"
        assert s.sharpen(frames(1, 40, 40)[0]).shape == (40, 40, 3)


def test_onnx_needs_the_onnx_package_to_export(monkeypatch):
    hide(monkeypatch, "onnx")
    assert runtimes.choose_backend("auto", CPU) == "torch"


@pytest.mark.parametrize("backend, extra", [("openvino", "livesharp[openvino]"), ("onnx", "livesharp[onnx]")])
def test_a_requested_backend_that_is_missing_names_the_extra(monkeypatch, backend, extra):
    hide(monkeypatch, "openvino", "onnxruntime")
    with pytest.raises(LivesharpError, match=re.escape(f'pip install "{extra}"')):
        runtimes.choose_backend(backend, CPU)


def test_missing_backend_on_the_command_line_is_one_line(monkeypatch, tmp_path):
    import cv2

    hide(monkeypatch, "openvino")
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), frames(1, 40, 40)[0])
    result = CliRunner().invoke(cli, ["image", str(src), str(tmp_path / "b.png"), "--backend", "openvino"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ['error: --backend openvino: openvino not installed; pip install "livesharp[openvino]", or use --backend auto']
    assert not (tmp_path / "b.png").exists()


@pytest.mark.parametrize("backend", RUNTIMES)
def test_cpu_runtimes_refuse_cuda(backend):
    with pytest.raises(LivesharpError, match="runs on the CPU"):
        runtimes.choose_backend(backend, torch.device("cuda"))


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtimes_leave_torch_threads_alone_and_use_the_given_count(backend, random_student, threads):
    torch.set_num_threads(1)
    with Sharpener(random_student(), device="cpu", backend=backend, threads=2) as s:
        s.sharpen(frames(1, 40, 40)[0])
        assert torch.get_num_threads() == 1
        if backend == "onnx":
            assert s.runner.session.get_session_options().intra_op_num_threads == 2
        else:
            request = next(iter(s.runner.requests.values()))
            assert request.get_compiled_model().get_property("INFERENCE_NUM_THREADS") == 2
    assert torch.get_num_threads() == 1


def test_the_export_is_cached_by_model_hash(random_student, tmp_path, monkeypatch):
    monkeypatch.setenv("LIVESHARP_CACHE", str(tmp_path / "cache"))
    a, b = random_student(seed=1), random_student(seed=2)
    path = cached_graph(a)
    stamp = path.stat().st_mtime_ns
    assert cached_graph(random_student(seed=1)) == path  # same weights: same file, not re-exported
    assert path.stat().st_mtime_ns == stamp
    assert cached_graph(b) != path
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.onnx")) == sorted([path.name, cached_graph(b).name])
    assert not list((tmp_path / "cache").glob(".*"))  # no partial files left


def test_an_unwritable_cache_without_a_temporary_folder_is_one_clear_error(random_student, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LIVESHARP_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))  # the fallback cannot be made either
    with pytest.raises(LivesharpError, match="LIVESHARP_CACHE"):
        cached_graph(random_student())


def unwritable_folder(tmp_path, how):
    """A cache folder that cannot be written: one under a file (no one can create it), or an
    existing read-only one (root writes there anyway, so that case needs another user)."""
    if how == "under a file":
        (tmp_path / "file").write_text("not a folder")
        return tmp_path / "file" / "home"
    if os.geteuid() == 0:
        pytest.skip("root can write a read-only folder")
    folder = tmp_path / "home"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("how", ["under a file", "read-only"])
def test_an_unwritable_cache_falls_back_to_a_temporary_one_with_one_warning(how, random_student, tmp_path, monkeypatch, caplog, threads):
    folder = unwritable_folder(tmp_path, how)
    monkeypatch.setenv("LIVESHARP_CACHE", str(folder / "cache"))
    caplog.set_level(logging.WARNING, logger="livesharp")
    net = random_student()
    with Sharpener(net, device="cpu", backend="onnx") as s:
        out = s.sharpen(frames(1, 40, 56)[0])
    with Sharpener(net, device="cpu", backend="torch", precision="fp32") as ref:
        assert np.abs(out.astype(int) - ref.sharpen(frames(1, 40, 56)[0])).max() <= 1
    graph = cached_graph(net)
    assert not graph.is_relative_to(folder) and graph.parent == cache_dir() and graph.is_file()
    assert len(caplog.records) == 1, caplog.records  # once per process, however often the cache is used
    assert "using a temporary one" in caplog.records[0].getMessage() and "LIVESHARP_CACHE" in caplog.records[0].getMessage()
    monkeypatch.setenv("LIVESHARP_CACHE", str(tmp_path / "writable"))  # pointed elsewhere: obeyed at once
    assert cache_dir() == tmp_path / "writable"


def test_a_read_only_home_is_a_warning_line_not_an_error(tmp_path, monkeypatch, random_student):
    monkeypatch.delenv("LIVESHARP_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    (tmp_path / "file").write_text("not a folder")
    ckpt = tmp_path / "student.pt"
    save_student(random_student(), ckpt)
    import cv2

    cv2.imwrite(str(tmp_path / "in.png"), frames(1, 40, 56)[0])
    env = {**os.environ, "HOME": str(tmp_path / "file" / "home")}
    r = subprocess.run([sys.executable, "-m", "livesharp", "image", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(ckpt)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot write the cache folder" in warnings[0], r.stderr
    assert "Traceback" not in r.stderr and (tmp_path / "out.png").is_file()


# Two first runs at once: each child waits until both are ready, then builds a Sharpener (which
# exports the graph into the shared, empty cache and, under OpenVINO, compiles into its cache).
CHILD = """
import hashlib, pathlib, sys, time
import livesharp.settings
livesharp.settings.apply_thread_policy()
import numpy as np
from livesharp import export
from livesharp.engine import Sharpener
from livesharp.model import load_student
ckpt, ready, go, backend, exports = sys.argv[1:]
real_export = export.export_onnx
def export_onnx(*args, **kwargs):  # a spy: the real export, and a line saying it ran
    with open(exports, "a") as f:
        f.write("exported\\n")
    return real_export(*args, **kwargs)
export.export_onnx = export_onnx
net = load_student(ckpt)
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.005)
with Sharpener(net, device="cpu", backend=backend) as s:
    out = s.sharpen(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
path = export.cached_graph(net)
print(path, path.stat().st_ino, hashlib.sha256(out.tobytes()).hexdigest())
"""


def test_two_processes_exporting_at_once_share_one_complete_graph(tmp_path, random_student, threads):
    backend = "openvino" if runtimes.installed("openvino") else "onnx"
    ckpt = tmp_path / "student.pt"
    save_student(random_student(seed=3), ckpt)
    cache = tmp_path / "cache"
    env = {**os.environ, "LIVESHARP_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(ckpt), str(tmp_path / f"ready{i}"), str(tmp_path / "go"), backend, str(tmp_path / "exports")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    (path_a, inode_a, out_a), (path_b, inode_b, out_b) = (out.split() for out, _ in results)
    assert (tmp_path / "exports").read_text() == "exported\n"  # once: the second process waited, then found it
    assert path_a == path_b and inode_a == inode_b
    assert out_a == out_b  # the same frames from both
    assert [p.name for p in cache.glob("*.onnx")] == [Path(path_a).name]
    assert not list(cache.glob(".*"))  # no partial files left


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("LIVESHARP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "livesharp"


@pytest.mark.skipif(sys.platform != "linux", reason="the user's cache folder is another on macOS and Windows")
def test_the_default_cache_dir_is_under_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LIVESHARP_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "livesharp"


def test_export_refuses_baselines_bad_names_and_existing_files(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["export", "unsharp", str(tmp_path / "u.onnx")])
    assert r.exit_code == 1 and "no network to export" in r.output
    r = runner.invoke(cli, ["export", "tiny", str(tmp_path / "t.pt")])
    assert r.exit_code == 1 and "name it .onnx" in r.output
    existing = tmp_path / "t.onnx"
    existing.write_bytes(b"keep")
    r = runner.invoke(cli, ["export", "tiny", str(existing)])
    assert r.exit_code == 1 and "--overwrite" in r.output and existing.read_bytes() == b"keep"


@pytest.mark.parametrize("variant", ["tiny", "tiny-detail", "tiny-detail2"])
def test_export_uint8_graph_takes_frames(tmp_path, random_student, threads, variant):
    import onnxruntime as ort

    net = random_student(variant, seed=3)
    out = engine.export_model(net, tmp_path / "frames.onnx", io="uint8")
    batch = np.stack(frames(2, 40, 52))
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": batch, "strength": np.ones(1, np.float32)})[0]
    with Sharpener(net, device="cpu", backend="torch") as s:
        want = np.stack(s.sharpen_batch(list(batch)))
    assert got.dtype == np.uint8 and got.shape == batch.shape
    assert np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.parametrize("variant", ["tiny", "conv32", "tiny-detail", "tiny-detail2"])
def test_the_uint8_graph_holds_no_float_frame_at_full_resolution(tmp_path, random_student, variant):
    """Why int8 runs fast: the frame is folded while still bytes and unfolded after rounding, so
    no float pass runs over a full-size frame and the first convolution reads the bytes (720p
    int8 ran about 1.4x faster than with float frames). Every tensor OpenVINO infers for a 64x96
    frame is checked (no padding at these sides, so a full-size tensor shows as 64, 96)."""
    from livesharp.graph import openvino
    ov = openvino()

    out = engine.export_model(random_student(variant), tmp_path / "g.onnx", io="uint8")
    model = ov.Core().read_model(str(out))
    model.reshape({"input": [1, 64, 96, 3], "strength": [1]})
    full_size_floats, bytes_at_full_size = [], 0
    for op in model.get_ordered_ops():
        for port in op.outputs():
            shape = port.get_partial_shape()
            if not shape.is_static:
                continue
            dims = list(shape.to_shape())
            if any(dims[i : i + 2] == [64, 96] for i in range(len(dims) - 1)):
                if port.get_element_type().is_real():
                    full_size_floats.append(f"{op.get_type_name()} {op.get_friendly_name()} {dims}")
                else:
                    bytes_at_full_size += 1
    assert not full_size_floats
    assert bytes_at_full_size >= 2  # the frames in and out: the check looked at the right sizes


def test_the_uint8_graph_moves_the_frame_bytes_once_at_each_end(tmp_path, random_student):
    """The frame is folded and unfolded by one transpose each (``export.fold_frames``), not by a
    permute to NCHW and a pixel (un)shuffle: the byte moves are the graph's only full-size work
    (720p int8 ran 4-7 % faster with one at each end). Counted in the graph OpenVINO reads."""
    from livesharp.graph import openvino
    ov = openvino()

    out = engine.export_model(random_student("tiny"), tmp_path / "g.onnx", io="uint8")
    model = ov.Core().read_model(str(out))
    moves = [op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in ("Transpose", "DepthToSpace", "SpaceToDepth") and op.get_output_element_type(0).get_type_name() == "u8"]
    assert len(moves) == 2, moves


@pytest.mark.parametrize("backend", RUNTIMES)
def test_a_single_frame_reaches_the_runtime_without_a_copy(tmp_path, random_student, backend):
    # Live mode sharpens one frame at a time: stacking it into a batch, or letting OpenVINO copy
    # its input, moved 2.7 MB more per 720p frame. The result is the batch path's.
    graph = engine.export_model(random_student(seed=4), tmp_path / "g.onnx", io="uint8")
    runner = runtimes.RUNNERS[backend](graph, threads=1, min_side=32)
    one, other = frames(2, 64, 96, seed=5)
    assert np.shares_memory(runner.upload([one]), one)
    pair = runner.run(np.stack([one, other]), 1.0)
    for alone, batched in zip((runner.run([one], 1.0)[0], runner.run([other], 1.0)[0]), pair):  # within rounding: kernels may differ by batch
        assert np.abs(alone.astype(int) - batched).max() <= 1


def test_file_mode_openvino_computes_two_frames_at_once_and_keeps_their_order(tmp_path, random_student, monkeypatch):
    # File mode's batches go to OpenVINO one frame per stream (throughput beside the encoder); a
    # lone frame, and live mode's every frame, to one request on all the threads (latency). Each
    # frame must come back in its place.
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    model = tmp_path / "m.pt"
    save_student(random_student(seed=6), model)
    batch = np.stack(frames(5, 64, 96, seed=7))
    with Sharpener(model, device="cpu", backend="openvino", precision="fp32") as f, \
            Sharpener(model, device="cpu", backend="openvino", precision="fp32", live=True) as live:
        assert f.runner.streams == 2 and live.runner.streams == 1
        out = f.runner.run(batch, 1.0)
        queue = f.runner.queues[(1, 64, 96, 3)]  # compiled for one frame, whatever the batch
        assert len(queue) == 2 and queue[0].get_compiled_model().get_property("NUM_STREAMS") == 2
        assert f.runner.requests == {}
        one_by_one = [f.runner.run([x], 1.0)[0] for x in batch]
        assert list(f.runner.requests) == [(1, 64, 96, 3)]
        assert f.runner.requests[(1, 64, 96, 3)].get_compiled_model().get_property("NUM_STREAMS") == 1
        live.runner.run(batch[:2], 1.0)
        assert live.runner.queues == {}
    assert out.shape == batch.shape
    for a, b in zip(out, one_by_one):  # within rounding: thread counts may differ
        assert np.abs(a.astype(int) - b).max() <= 1
    assert np.abs(out[0].astype(int) - one_by_one[1]).max() > 1  # the frames differ: order is checked


def test_fold_frames_is_pixel_unshuffle_of_the_padded_frame():
    from livesharp.export import fold_frames, unfold_frames

    frames = torch.randint(0, 256, (2, 37, 45, 3), dtype=torch.uint8)
    padded = torch.nn.functional.pad(frames.permute(0, 3, 1, 2).float(), (0, 3, 0, 11), mode="reflect")  # to 48 x 48
    torch.testing.assert_close(fold_frames(frames, 16, 4).float(), torch.nn.functional.pixel_unshuffle(padded, 4))
    assert torch.equal(unfold_frames(fold_frames(frames, 16, 4), 4)[:, :37, :45], frames)


def test_the_exported_naf_graph_splits_no_channels(tmp_path, random_student):
    """The NAFBlocks' gates are exported as two convolutions, not one convolution split in two:
    OpenVINO ran the channel split of bf16 tensors with its reference kernel (tiny v4 at 720p:
    the split form 7 % slower in int8, 11 % in bf16; ``Student.fused``). The layers OpenVINO
    compiles are checked."""
    from livesharp.graph import openvino
    ov = openvino()

    out = engine.export_model(random_student("tiny"), tmp_path / "g.onnx", io="uint8")
    core = ov.Core()
    model = core.read_model(str(out))
    model.reshape({"input": [1, 64, 96, 3], "strength": [1]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1})
    layers = [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()]
    assert layers.count("Convolution") >= 40  # the blocks were compiled: the check looked at them
    assert "Split" not in layers


def inference_threads(s: Sharpener) -> int:
    """The thread count a Sharpener gave its runtime (torch: what its batches run on)."""
    if s.backend == "torch":
        seen, forward = [], s.runner.net.forward
        s.runner.net.forward = lambda x: (seen.append(torch.get_num_threads()), forward(x))[1]
        s.sharpen(frames(1, 40, 40)[0])
        assert len(seen) == 1
        return seen[0]
    if s.backend == "onnx":
        return s.runner.session.get_session_options().intra_op_num_threads
    return s.runner.config["INFERENCE_NUM_THREADS"]


@pytest.mark.parametrize("backend", RUNTIMES)
def test_default_threads_fit_the_cores_this_process_may_use(backend, random_student, threads, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})  # a 4-core machine
    with Sharpener(random_student(), device="cpu", backend=backend) as s:
        s.sharpen(frames(1, 40, 40)[0])
        n = inference_threads(s)
        if backend == "openvino":
            # OpenVINO itself never takes more than the machine's real cores
            assert next(iter(s.runner.requests.values())).get_compiled_model().get_property("INFERENCE_NUM_THREADS") <= n
    assert n == engine.cpu_threads() == 3  # one core left for decode and encode


@pytest.mark.parametrize("backend, live_threads", [("torch", 1), ("onnx", 1), ("openvino", 2)])
def test_live_mode_gives_openvino_every_core_and_leaves_one_free_for_the_others(backend, live_threads, random_student, threads, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # the 2-core machine of the benchmarks
    with Sharpener(random_student(), device="cpu", backend=backend, live=True) as s:
        assert inference_threads(s) == live_threads
    with Sharpener(random_student(), device="cpu", backend=backend) as s:  # file mode: every core
        assert inference_threads(s) == 2


INTERRUPTED_BATCH = """
import signal, sys
import numpy as np
from livesharp import settings
from livesharp.runtimes import OpenVinoRunner

runner = OpenVinoRunner(settings.shipped_graph("tiny"), threads=2, precision="fp32", streams=2)
frames = np.random.default_rng(0).integers(0, 256, (32, 64, 96, 3), dtype=np.uint8)
runner.infer(frames, 1.0)

def stop(*_):
    raise KeyboardInterrupt
signal.signal(signal.SIGALRM, stop)
try:
    for delay in np.linspace(0.0005, 0.01, 12):  # the first lands while the batch runs
        signal.setitimer(signal.ITIMER_REAL, float(delay))
        runner.infer(frames, 1.0)
        signal.setitimer(signal.ITIMER_REAL, 0)
except KeyboardInterrupt:
    sys.exit(130)  # at once, as the command line does
sys.exit("never interrupted")
"""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_ctrl_c_in_the_middle_of_a_batch_exits_cleanly():
    """Ctrl-C while a batch was being started left requests running whose completion calls back
    into Python; as the interpreter shut down that aborted the process ("FATAL: exception not
    rethrown", exit 134) in 4 of 6 runs of this child, and 2-3 of 14 interrupted `file` runs."""
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", INTERRUPTED_BATCH], capture_output=True, text=True, timeout=300)
        assert r.returncode == 130, (r.returncode, r.stderr[-2000:])

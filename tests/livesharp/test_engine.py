"""Tests for livesharp/engine.py: uint8 frames in, uint8 frames out."""

import numpy as np
import pytest
import torch

from livesharp import engine, ops, runtimes
from livesharp.engine import Sharpener
from livesharp.errors import LivesharpError
from livesharp.model import ModelError, save_student


def frames(n: int = 3, h: int = 37, w: int = 45, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def threads():
    """Restore torch's CPU thread count, which a Sharpener changes while open."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


@pytest.mark.parametrize("strength", [1.0, 0.5, 2.0])
def test_an_identity_student_returns_every_pixel_unchanged(identity_student, strength, threads):
    with Sharpener(identity_student(), device="cpu", strength=strength) as s:
        for f in frames():
            out = s.sharpen(f)
            assert out.dtype == np.uint8 and out.shape == f.shape
            np.testing.assert_array_equal(out, f)


def test_strength_zero_passes_frames_through(random_student, threads):
    batch = frames()
    with Sharpener(random_student(), device="cpu", strength=0.0) as s:
        out = s.sharpen_batch(batch)
    for o, f in zip(out, batch):
        np.testing.assert_array_equal(o, f)
        assert o is not f  # a copy: the caller may reuse its buffer


def test_a_random_student_changes_the_picture(random_student, threads):
    f = frames(1)[0]
    with Sharpener(random_student(), device="cpu") as s:
        out = s.sharpen(f)
    assert np.abs(out.astype(int) - f).mean() > 2


def test_strength_blends_between_input_and_model(random_student, threads):
    f = frames(1)[0].astype(int)
    net = random_student()
    with Sharpener(net, device="cpu", strength=1.0) as s:
        full = s.sharpen(f.astype(np.uint8)).astype(int)
    with Sharpener(net, device="cpu", strength=0.5) as s:
        half = s.sharpen(f.astype(np.uint8)).astype(int)
    # Halfway, up to rounding. The blend happens before clipping to 0..255, so only pixels the
    # model did not push out of range are a fair comparison.
    inside = (full > 0) & (full < 255)
    assert inside.mean() > 0.5
    assert np.abs(half - (f + full) / 2)[inside].max() <= 1


def test_a_batch_gives_the_same_frames_as_one_at_a_time(random_student, threads):
    batch = frames(4)
    with Sharpener(random_student(), device="cpu") as s:
        together = s.sharpen_batch(batch)
        apart = [s.sharpen(f) for f in batch]
    assert len(together) == 4
    for a, b in zip(together, apart):
        # float sums in another order may move a value across a rounding boundary
        assert np.abs(a.astype(int) - b).max() <= 1
        assert (a == b).mean() > 0.99


def test_outputs_are_finite_and_in_range_for_extreme_inputs(random_student, threads):
    black, white = np.zeros((9, 11, 3), np.uint8), np.full((9, 11, 3), 255, np.uint8)
    with Sharpener(random_student(scale=0.5), device="cpu", strength=2.0) as s:
        out = s.sharpen_batch([black, white])
    assert all(o.dtype == np.uint8 and o.shape == (9, 11, 3) for o in out)


def test_an_empty_batch_is_empty(identity_student, threads):
    with Sharpener(identity_student(), device="cpu") as s:
        assert s.sharpen_batch([]) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8, 3), np.float32),
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
    ],
)
def test_frames_that_are_not_uint8_rgb_are_rejected(bad, identity_student, threads):
    with Sharpener(identity_student(), device="cpu") as s:
        with pytest.raises(ValueError, match="uint8"):
            s.sharpen(bad)


def test_frames_of_different_sizes_in_one_batch_are_rejected(identity_student, threads):
    with Sharpener(identity_student(), device="cpu") as s:
        with pytest.raises(ValueError, match="one shape"):
            s.sharpen_batch([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)])


@pytest.mark.parametrize("strength", [-0.1, 2.5])
def test_strength_outside_0_to_2_is_an_error(strength):
    with pytest.raises(LivesharpError, match="--strength"):
        Sharpener("unsharp", device="cpu", strength=strength)


@pytest.mark.parametrize("strength", [0.5, 1.0, 1.5])
def test_the_unsharp_baseline_is_unsharp_mask(strength):
    f = frames(1)[0]
    s = Sharpener("unsharp", device="cpu", strength=strength)
    assert s.net is None and s.name == "unsharp"
    np.testing.assert_array_equal(s.sharpen(f), ops.unsharp_mask(f, amount=strength))


def threads_while_computing(s: Sharpener, frame: np.ndarray) -> list[int]:
    """torch's thread count as the network sees it, for each batch it runs during ``sharpen``."""
    seen, forward = [], s.runner.net.forward
    s.runner.net.forward = lambda x: (seen.append(torch.get_num_threads()), forward(x))[1]
    s.sharpen(frame)
    return seen


def test_torch_runs_on_its_threads_and_leaves_the_process_setting_alone(identity_student, threads, monkeypatch):
    monkeypatch.setattr(engine, "cpu_threads", lambda live, backend: 2)
    torch.set_num_threads(1)
    with Sharpener(identity_student(), device="cpu", backend="torch") as s:
        assert torch.get_num_threads() == 1  # opening one changes nothing process-wide...
        assert threads_while_computing(s, frames(1)[0]) == [2]  # ...its batches run on its threads...
        assert torch.get_num_threads() == 1  # ...and give the setting back after each one
    assert torch.get_num_threads() == 1


def test_every_backend_is_a_runner_with_one_interface(identity_student):
    batch = np.stack(frames(2, 40, 40))
    for kw in (dict(model="unsharp"), *(dict(model=identity_student(), backend=b) for b in ("torch", "onnx", "openvino"))):
        with Sharpener(device="cpu", **kw) as s:
            assert isinstance(s.runner, runtimes.Runner) and s.precision == s.runner.precision
            out = s.runner.run(batch, 1.0)
            assert len(out) == 2 and all(o.shape == (40, 40, 3) and o.dtype == np.uint8 for o in out)
            if s.net is not None:  # the identity student: every backend returns the input
                np.testing.assert_array_equal(np.stack(out), batch)


def test_unknown_device_is_an_error():
    with pytest.raises(LivesharpError, match="unknown device"):
        engine.resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_an_error_that_names_the_fix():
    with pytest.raises(LivesharpError, match="--device cpu"):
        engine.resolve_device("cuda")
    assert engine.resolve_device("auto") == torch.device("cpu")


def test_no_installed_weights_is_an_error_that_names_model(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVESHARP_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match="--model"):
        Sharpener(device="cpu")


def test_installed_weights_are_the_default_model(tmp_path, monkeypatch, random_student, threads):
    monkeypatch.setenv("LIVESHARP_MODELS", str(tmp_path))
    net = random_student()
    save_student(net, tmp_path / "livesharp-tiny.pt")
    f = frames(1)[0]
    with Sharpener(device="cpu") as shipped, Sharpener(net, device="cpu") as direct:
        assert shipped.name == engine.DEFAULT_MODEL
        np.testing.assert_array_equal(shipped.sharpen(f), direct.sharpen(f))


def test_a_model_that_is_neither_a_name_nor_a_file_is_an_error(tmp_path):
    with pytest.raises(ModelError, match="missing.pt: no such file"):  # meant as a file
        Sharpener(str(tmp_path / "missing.pt"), device="cpu")
    with pytest.raises(ModelError, match="unknown model 'enormous'"):
        Sharpener("enormous", device="cpu")


def test_cuda_matches_cpu(device, random_student, threads):
    batch = frames(3, 45, 61)
    net = random_student()
    with Sharpener(net, device="cpu", backend="torch") as s:
        on_cpu = s.sharpen_batch(batch)
    with Sharpener(random_student(), device=str(device)) as s:  # fp16, channels_last
        assert s.precision == "fp16"
        on_gpu = s.sharpen_batch(batch)
        on_gpu_again = s.sharpen_batch(batch[:2])  # reused pinned buffers, other batch size
    with Sharpener(random_student(), device=str(device), precision="fp32") as s:
        on_gpu_fp32 = s.sharpen_batch(batch)
    for a, b, c in zip(on_cpu, on_gpu, on_gpu_fp32):
        assert np.abs(a.astype(int) - b).max() <= 2
        assert np.abs(a.astype(int) - c).max() <= 1
    for a, b in zip(on_gpu, on_gpu_again):
        np.testing.assert_array_equal(a, b)


def test_warming_up_compiles_for_the_size_even_at_strength_zero(random_student, threads):
    # OpenVINO compiles one graph per frame shape: after the warm-up, the first real frame of
    # that size finds it compiled, whatever strength the session starts with.
    with Sharpener(random_student(), device="cpu", backend="openvino", strength=0.0) as s:
        seconds = s.warm_up(48, 64)
        assert seconds > 0 and list(s.runner.requests) == [(1, 48, 64, 3)]
        f = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        np.testing.assert_array_equal(s.sharpen(f), f)  # strength 0 is still the input
        s.sharpen(f, 1.0)
        assert list(s.runner.requests) == [(1, 48, 64, 3)]  # nothing compiled again

"""Tests for livesharp/cli.py: argument mapping (library mocked), and what a user sees on bad input."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from livesharp import engine, pipeline
from livesharp.cli import cli
from livesharp.model import save_student
from livesharp.pipeline import FileResult


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(result, *words: str) -> str:
    # CliRunner catches any exception: an escaped one would show up here, not as a traceback.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture
def identity_checkpoint(tmp_path, identity_student):
    path = tmp_path / "models" / "identity.pt"
    path.parent.mkdir()
    save_student(identity_student(), path)
    return path


# --- bad input: one line, non-zero exit, nothing written, input untouched -----------------


def _garbage_span(path: Path, dst: Path, start: float, size: int) -> Path:
    """A copy of ``path`` with ``size`` random bytes written over it at ``start`` (a fraction)."""
    data = bytearray(path.read_bytes())
    at = int(len(data) * start)
    data[at : at + size] = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def case_missing(tmp_path, video, make_video):
    return [tmp_path / "missing.mp4", tmp_path / "out.mp4"], ["no such file"]


def case_directory(tmp_path, video, make_video):
    (tmp_path / "clips").mkdir()
    return [tmp_path / "clips", tmp_path / "out.mp4"], ["directory"]


def case_text_file(tmp_path, video, make_video):
    (tmp_path / "notes.mp4").write_text("not a video\n")
    return [tmp_path / "notes.mp4", tmp_path / "out.mp4"], ["not a video file"]


def case_output_is_input(tmp_path, video, make_video):
    return [video, video], ["output is the input"]


def case_output_is_input_by_another_path(tmp_path, video, make_video):
    (tmp_path / "sub").mkdir()
    return [video, tmp_path / "sub" / ".." / video.name, "--overwrite"], ["output is the input"]


def case_output_exists(tmp_path, video, make_video):
    (tmp_path / "out.mp4").write_bytes(b"keep me")
    return [video, tmp_path / "out.mp4"], ["already exists", "--overwrite"]


def case_output_is_a_directory(tmp_path, video, make_video):
    (tmp_path / "results").mkdir()
    return [video, tmp_path / "results"], ["is a directory", "sharp_plain.mp4"]


def case_output_folder_missing(tmp_path, video, make_video):
    return [video, tmp_path / "nowhere" / "out.mp4"], ["folder does not exist"]


def case_output_folder_unwritable(tmp_path, video, make_video):
    # Root may write anywhere a plain chmod forbids; nobody can create a file in /proc.
    return [video, "/proc/livesharp_x.mp4"], ["cannot write", "folder"]


def case_output_suffix_unknown(tmp_path, video, make_video):
    return [video, tmp_path / "out.avi"], ["unknown output type", ".mp4"]


def case_model_unknown(tmp_path, video, make_video):
    return [video, tmp_path / "out.mp4", "--model", "enormous"], ["unknown model", "enormous"]


def case_model_garbage(tmp_path, video, make_video):
    (tmp_path / "broken.pt").write_bytes(b"\x00garbage" * 64)
    return [video, tmp_path / "out.mp4", "--model", tmp_path / "broken.pt"], ["checkpoint"]


def case_model_file_missing(tmp_path, video, make_video):
    # meant as a file, not a name: it was told to be an unknown model name
    return [video, tmp_path / "out.mp4", "--model", tmp_path / "mine.onnx"], ["mine.onnx: no such file"]


def case_model_a_text_file(tmp_path, video, make_video):
    # torch's reader met "hi" and said "KeyError: 105"
    (tmp_path / "notes.txt").write_text("hi\n")
    return [video, tmp_path / "out.mp4", "--model", tmp_path / "notes.txt"], ["notes.txt: not a readable livesharp checkpoint (not a file torch.save wrote"]


def case_truncated(tmp_path, video, make_video):
    full = make_video("full.mkv", frames=40)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return [cut, tmp_path / "out.mp4"], ["truncated"]


def case_corrupt_mp4(tmp_path, video, make_video):
    full = make_video("full.mp4", frames=40)
    bad = _garbage_span(full, tmp_path / "bad.mp4", 0.4, full.stat().st_size // 5)
    full.unlink()
    return [bad, tmp_path / "out.mp4"], ["damaged"]


def case_corrupt_mkv(tmp_path, video, make_video):
    full = make_video("full.mkv", frames=40)
    bad = _garbage_span(full, tmp_path / "bad.mkv", 0.4, full.stat().st_size // 5)
    full.unlink()
    return [bad, tmp_path / "out.mkv"], ["damaged"]


def case_corrupt_ffv1(tmp_path, video, make_video):
    full = make_video("full.mkv", frames=40, codec="ffv1")
    bad = _garbage_span(full, tmp_path / "bad.mkv", 0.5, 1024)
    full.unlink()
    return [bad, tmp_path / "out.mkv"], ["damaged"]


def case_corrupt_but_concealed(tmp_path, video, make_video):
    # 16 bytes: H.264 decodes on, hiding the damage, and only flags the frame as corrupt.
    full = make_video("full.mp4", frames=40)
    bad = _garbage_span(full, tmp_path / "bad.mp4", 0.5, 16)
    full.unlink()
    return [bad, tmp_path / "out.mp4"], ["damaged", "conceal"]


CASES = [
    case_missing, case_directory, case_text_file, case_output_is_input, case_output_is_input_by_another_path,
    case_output_exists, case_output_is_a_directory, case_output_folder_missing, case_output_folder_unwritable, case_output_suffix_unknown,
    case_model_unknown, case_model_garbage, case_model_file_missing, case_model_a_text_file, case_truncated, case_corrupt_mp4, case_corrupt_mkv, case_corrupt_ffv1,
    case_corrupt_but_concealed,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_is_one_line_and_leaves_everything_as_it_was(case, tmp_path, video, make_video):
    args, words = case(tmp_path, video, make_video)
    before = snapshot(tmp_path)
    model = [] if "--model" in args else ["--model", "unsharp"]  # the fast baseline, unless the case is about models
    result = run("file", *args, *model, "--device", "cpu")
    assert_one_line_error(result, *words)
    # No output, no hidden partial file, inputs (and an existing output) unchanged.
    assert snapshot(tmp_path) == before
    assert not Path("/proc/livesharp_x.mp4").exists()


def test_overwrite_replaces_an_existing_output(tmp_path, video, probe):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    result = run("file", video, out, "--model", "unsharp", "--device", "cpu", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(probe(out).frames) == 20


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(tmp_path, video):
    result = run("file", video, tmp_path / "out.mp4", "--model", "unsharp", "--device", "cuda")
    assert_one_line_error(result, "--device cuda")
    assert not (tmp_path / "out.mp4").exists()


def test_ctrl_c_stops_cleanly_with_exit_130(tmp_path, video, monkeypatch):
    class Interrupted(pipeline.Sharpener):
        """Ctrl-C once the hidden partial output exists, so its removal is what gets tested."""

        def sharpen_batch(self, frames):
            if any(tmp_path.glob(".*livesharp-partial-*")):
                raise KeyboardInterrupt
            return super().sharpen_batch(frames)

    monkeypatch.setattr(pipeline, "Sharpener", Interrupted)
    before = snapshot(tmp_path)
    # ultrafast: x264 hands out packets after a frame or two, so the partial file appears early.
    result = run("file", video, tmp_path / "out.mp4", "--model", "unsharp", "--device", "cpu", "--batch", "1", "--preset", "ultrafast")
    assert result.exit_code == 130
    assert "Traceback" not in result.output
    assert result.output.splitlines() == ["interrupted: stopped, and no partial output was left behind"]
    assert snapshot(tmp_path) == before


def test_an_odd_size_is_written_with_a_one_line_warning(tmp_path, odd_video, probe):
    out = tmp_path / "out.mp4"
    result = run("file", odd_video, out, "--model", "unsharp", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()  # (odd sizes are 4:4:4 in H.264: that is said first)
    assert [n for n in lines if "odd side" in n][0].startswith("warning: 65x37 has an odd side") and lines[-1].startswith(f"wrote {out}")
    assert (probe(out).width, probe(out).height) == (66, 38)


def test_a_command_run_in_process_leaves_the_callers_logging_as_it_found_it(tmp_path, odd_video):
    # The warning is printed while the command runs; afterwards a caller's handlers (pytest's
    # caplog, a notebook's) see the library's records again, and no handler is left behind.
    import logging

    logger = logging.getLogger("livesharp")
    before = (list(logger.handlers), logger.level, logger.propagate)
    result = run("file", odd_video, tmp_path / "out.mp4", "--model", "unsharp", "--device", "cpu")
    assert result.exit_code == 0 and "\nwarning: 65x37 has an odd side" in result.output, result.output
    assert (list(logger.handlers), logger.level, logger.propagate) == before


# --- the default model ---------------------------------------------------------------------


def test_without_installed_weights_the_default_model_is_one_line_naming_model(tmp_path, video, monkeypatch):
    monkeypatch.setenv("LIVESHARP_MODELS", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    result = run("file", video, tmp_path / "out.mp4", "--device", "cpu")
    assert_one_line_error(result, "--model", "no trained weights")
    assert not (tmp_path / "out.mp4").exists()


def test_installed_weights_are_used_by_default(tmp_path, video, probe, identity_checkpoint, monkeypatch):
    monkeypatch.setenv("LIVESHARP_MODELS", str(identity_checkpoint.parent))
    identity_checkpoint.rename(identity_checkpoint.parent / "livesharp-tiny.pt")
    out = tmp_path / "out.mp4"
    result = run("file", video, out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and len(probe(out).frames) == 20


# --- argument mapping, with the library mocked -------------------------------------------


@pytest.fixture
def inputs_here(tmp_path, monkeypatch):
    """The mapping tests name a.mp4 and a.jpg: the CLI checks that they exist before it
    hands them on, so they do, in a folder of the test's own."""
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "a.jpg"):
        (tmp_path / name).write_bytes(b"")


@mock.patch("livesharp.pipeline.process_file", autospec=True)
def test_file_flags_map_to_keyword_arguments(process_file, inputs_here):
    process_file.return_value = FileResult(Path("b.mp4"), 3, 1.0, 64, 48)
    result = run(
        "file", "a.mp4", "b.mp4", "--side-by-side", "--model", "small", "--strength", "1.5", "--device", "cpu",
        "--backend", "onnx", "--precision", "fp32", "--batch", "8", "--overwrite", "--crf", "23", "--preset", "fast", "--no-progress",
        "--no-detail",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    process_file.assert_called_once_with(
        "a.mp4", "b.mp4", model="small", device="cpu", backend="onnx", precision="fp32", strength=1.5, detail=False, side_by_side=True,
        batch=8, overwrite=True, crf=23, preset="fast", progress=False,
    )  # fmt: skip
    assert "wrote b.mp4 (3 frames, 64x48)" in result.output


@mock.patch("livesharp.pipeline.process_file", autospec=True)
def test_file_defaults(process_file, inputs_here):
    process_file.return_value = FileResult(Path("b.mp4"), 0, 0.0, 0, 0)
    result = run("file", "a.mp4", "b.mp4")
    assert result.exit_code == 0, result.output
    process_file.assert_called_once_with(
        "a.mp4", "b.mp4", model=engine.DEFAULT_MODEL, device="auto", backend="auto", precision="auto", strength=1.0, detail=True, side_by_side=False,
        batch=4, overwrite=False, crf=18, preset="medium", progress=None,
    )  # fmt: skip


@mock.patch("livesharp.pipeline.process_image", autospec=True)
def test_image_flags_map_to_keyword_arguments(process_image, inputs_here):
    process_image.return_value = Path("b.png")
    result = run("image", "a.jpg", "b.png", "--side-by-side", "--model", "unsharp", "--strength", "0", "--device", "cpu", "--backend", "torch", "--overwrite")
    assert result.exit_code == 0, result.output
    process_image.assert_called_once_with("a.jpg", "b.png", model="unsharp", device="cpu", backend="torch", precision="auto", strength=0.0, detail=True,
                                          side_by_side=True, overwrite=True)


@pytest.mark.parametrize(
    "flags, mentions",
    [
        (["--strength", "3"], "--strength"),
        (["--strength", "-1"], "--strength"),
        (["--batch", "0"], "--batch"),
        (["--crf", "52"], "--crf"),
        (["--preset", "instant"], "--preset"),
        (["--device", "tpu"], "--device"),
    ],
)
@mock.patch("livesharp.pipeline.process_file", autospec=True)
def test_out_of_range_flags_are_rejected_before_any_work(process_file, flags, mentions):
    result = run("file", "a.mp4", "b.mp4", *flags)
    assert result.exit_code == 2
    assert mentions in result.output and "Traceback" not in result.output
    process_file.assert_not_called()


def test_version_is_the_installed_package_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"livesharp, version {version('livesharp')}"


@pytest.mark.parametrize("command, example", [([], "livesharp file"), (["file"], "livesharp file"), (["image"], "livesharp image"), (["cam"], "livesharp cam"), (["demo"], "livesharp demo"), (["devices"], "livesharp devices")])
def test_help_has_examples(command, example):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output and example in result.output


# --- images --------------------------------------------------------------------------------


def write_image(path: Path, h: int = 37, w: int = 50) -> np.ndarray:
    """Blocks of random colour: edges to sharpen, and exact in a PNG."""
    small = np.random.default_rng(0).integers(0, 256, (h // 6 + 1, w // 6 + 1, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def read_image(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_image_png_to_png_with_an_identity_model_is_exact(tmp_path, identity_checkpoint):
    rgb = write_image(tmp_path / "in.png")
    result = run("image", tmp_path / "in.png", tmp_path / "out.png", "--model", identity_checkpoint, "--device", "cpu")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), rgb)


def test_image_side_by_side_is_twice_as_wide(tmp_path):
    write_image(tmp_path / "in.png")
    result = run("image", tmp_path / "in.png", tmp_path / "out.png", "--model", "unsharp", "--device", "cpu", "--side-by-side")
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out.png").shape == (37, 100, 3)


@pytest.mark.parametrize("src, dst", [("in.jpg", "out.jpg"), ("in.jpeg", "out.png"), ("in.png", "out.jpg")])
def test_image_jpeg_in_and_out(tmp_path, src, dst):
    rgb = write_image(tmp_path / src, 48, 64)
    result = run("image", tmp_path / src, tmp_path / dst, "--model", "unsharp", "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / dst)
    assert out.shape == rgb.shape
    assert not np.array_equal(out, rgb)  # sharpened
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src, dst])


def test_image_that_is_not_an_image_is_one_line(tmp_path):
    (tmp_path / "in.png").write_text("not an image\n")
    before = snapshot(tmp_path)
    result = run("image", tmp_path / "in.png", tmp_path / "out.png", "--model", "unsharp", "--device", "cpu")
    assert_one_line_error(result, "not an image")
    assert snapshot(tmp_path) == before


def test_image_given_a_video_or_a_folder_says_which_and_what_to_run(tmp_path, video):
    (tmp_path / "folder").mkdir()
    before = snapshot(tmp_path)
    result = run("image", video, tmp_path / "out.png", "--model", "unsharp", "--device", "cpu")
    assert_one_line_error(result, "a video (H264), not a still picture", "livesharp file")
    result = run("image", tmp_path / "folder", tmp_path / "out.png", "--model", "unsharp", "--device", "cpu")
    assert_one_line_error(result, "is a directory, not a picture")
    assert snapshot(tmp_path) == before


def test_cam_stats_into_a_directory_is_one_line(tmp_path):
    result = run("cam", "--camera", tmp_path / "none.mp4", "--no-preview", "--stats", tmp_path)
    assert_one_line_error(result, "--stats", "is a directory; name a file in it")


def test_image_to_an_unknown_type_is_one_line(tmp_path):
    write_image(tmp_path / "in.png")
    before = snapshot(tmp_path)
    result = run("image", tmp_path / "in.png", tmp_path / "out.gif", "--model", "unsharp", "--device", "cpu")
    assert_one_line_error(result, "unknown output type", ".png")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_image_truncated_jpeg_is_one_line(tmp_path, progressive):
    rgb = write_image(tmp_path / "full.png", 96, 128)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    (tmp_path / "in.jpg").write_bytes(data.tobytes()[: len(data) * 6 // 10])
    (tmp_path / "full.png").unlink()
    before = snapshot(tmp_path)
    result = run("image", tmp_path / "in.jpg", tmp_path / "out.png", "--model", "unsharp", "--device", "cpu")
    assert_one_line_error(result, "truncated jpeg")  # and no libjpeg warning, no grey lower half written
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_image_whole_jpeg_with_bytes_after_its_end_is_accepted(tmp_path, progressive):
    rgb = write_image(tmp_path / "full.png", 96, 128)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    # What a motion photo appends after the picture: here bytes that look like markers.
    (tmp_path / "in.jpg").write_bytes(data.tobytes() + b"\xff\xda\x00\x04junk\xff")
    result = run("image", tmp_path / "in.jpg", tmp_path / "out.png", "--model", "unsharp", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out.png").shape == rgb.shape


# --- SIGTERM and SIGHUP during a run ------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_file_run_like_ctrl_c(tmp_path, make_video, sig):
    src = make_video("long.mp4", size=(320, 240), frames=400, rate=25)
    before = snapshot(tmp_path)
    # A real process: the signal must reach the CLI as it reaches a user's livesharp.
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesharp", "file", str(src), str(tmp_path / "out.mp4"), "--model", "unsharp", "--device", "cpu",
         "--preset", "veryslow", "--batch", "1", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(tmp_path.glob(".*livesharp-partial-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()  # still writing when the signal comes
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.splitlines()[-1] == "interrupted: stopped, and no partial output was left behind", err
    assert snapshot(tmp_path) == before


WHAT_WAS_IMPORTED = ("import sys\nfrom livesharp.cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit as e:\n"
                     "    print(e.code, 'torch' in sys.modules, 'cv2' in sys.modules)")


@pytest.mark.parametrize("command, args, words", [
    ("file", ["missing.mp4", "out.mp4"], ["no such file"]),
    ("file", ["in.mp4", "out.avi"], ["unknown output type"]),
    ("image", ["in.png", "out.gif"], ["unknown output type"]),
    ("image", ["in.png", "results"], ["is a directory", "sharp_in.png"]),
    ("cam", ["--camera", "in.mp4", "--stats", "nowhere/s.jsonl"], ["--stats nowhere/s.jsonl: cannot write it", "check the folder"]),
    ("cam", ["--camera", "in.mp4", "--stats", "/proc/livesharp_s.jsonl"], ["--stats /proc/livesharp_s.jsonl: cannot write it"]),
], ids=["missing-input", "bad-video-suffix", "bad-image-suffix", "image-output-is-a-directory", "cam-stats-missing-folder", "cam-stats-unwritable-folder"])
def test_a_bad_path_is_refused_before_torch_is_imported(tmp_path, command, args, words):
    (tmp_path / "in.mp4").write_bytes(b"x")
    (tmp_path / "in.png").write_bytes(b"x")
    (tmp_path / "results").mkdir()
    done = subprocess.run([sys.executable, "-c", WHAT_WAS_IMPORTED, command, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["1", "False", "False"], (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words), done.stderr
    assert not Path("/proc/livesharp_s.jsonl").exists()


@pytest.mark.parametrize("command, args, mentions", [
    ("file", ["in.mp4", "out.mp4", "--strength", "3"], "--strength"),
    ("file", ["in.mp4", "out.mp4", "--batch", "0"], "--batch"),
    ("image", ["in.png", "out.png", "--device", "tpu"], "--device"),
    ("cam", ["--fps", "0"], "--fps"),
], ids=["file-strength", "file-batch", "image-device", "cam-fps"])
def test_a_bad_argument_is_refused_before_torch_is_imported(tmp_path, command, args, mentions):
    (tmp_path / "in.mp4").write_bytes(b"x")
    (tmp_path / "in.png").write_bytes(b"x")
    done = subprocess.run([sys.executable, "-c", WHAT_WAS_IMPORTED, command, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], (done.stdout, done.stderr)
    assert mentions in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("existing", [False, True])
def test_an_interrupt_after_the_output_is_published_says_it_was_written(tmp_path, video, monkeypatch, existing):
    """Ctrl-C that lands once the output has its name (while the runtime shuts down) said "no
    partial output was left behind", as if nothing had been written, over a replaced file. The
    moment cannot be hit by a real signal in a test: the run raises it as the signal would."""
    from livesharp import pipeline

    real = pipeline.process_file

    def then_interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "process_file", then_interrupted)
    out = tmp_path / "out.mp4"
    if existing:
        out.write_bytes(b"old")
    result = run("file", video, out, "--model", "unsharp", "--device", "cpu", *(["--overwrite"] if existing else []))
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == f"interrupted: stopped after {out} was written complete"
    assert out.stat().st_size > 3

    monkeypatch.setattr(pipeline, "process_file", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    result = run("file", video, tmp_path / "never.mp4", "--model", "unsharp", "--device", "cpu")
    assert result.exit_code == 130 and result.output.strip().splitlines()[-1] == "interrupted: stopped, and no partial output was left behind"

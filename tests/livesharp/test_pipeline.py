"""Tests for livesharp/pipeline.py and the PyAV reader/writer in io.py, on synthetic videos."""

import _thread
import hashlib
import os
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from livesharp.errors import LivesharpError
from livesharp.model import VARIANTS, Student
from livesharp.ops import psnr
from livesharp.pipeline import process_file, process_image

INPUTS = ["video", "video_with_audio", "odd_video", "rotated_video", "vfr_video", "video_10bit", "video_yuv444"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*livesharp-partial-*"))


@pytest.mark.parametrize("side_by_side", [False, True], ids=["plain", "side-by-side"])
@pytest.mark.parametrize("name", INPUTS)
def test_timing_audio_rotation_and_pictures_survive(name, side_by_side, request, tmp_path, probe, identity_student):
    src = request.getfixturevalue(name)
    before = sha256(src)
    dst = tmp_path / "out.mp4"
    result = process_file(src, dst, model=identity_student(), device="cpu", side_by_side=side_by_side, progress=False)
    a, b = probe(src), probe(dst)

    assert sha256(src) == before
    assert leftovers(tmp_path) == []
    assert result.output == dst and result.frames == len(a.frames)
    # Every frame, at the time it was shown, for as long as it was shown.
    assert len(b.frames) == len(a.frames)
    assert b.times == pytest.approx(a.times, abs=1e-6)
    assert b.duration == pytest.approx(a.duration, abs=1e-3)
    # Audio is copied, not re-encoded.
    assert len(b.audio) == len(a.audio)
    assert b.audio == a.audio

    h, w = a.height, a.width
    if not side_by_side:
        # The display matrix travels with the stream; odd sides are padded to even for yuv420p.
        assert b.rotation == a.rotation
        assert (b.width, b.height) == (result.width, result.height) == (w + w % 2, h + h % 2)
        # An identity student: what comes out is what went in, up to H.264 at crf 18.
        worst = min(psnr(x, y[:h, :w]) for x, y in zip(a.frames, b.frames))
        assert worst > 35
    else:
        # Two panels side by side cannot share one display matrix: they are turned upright.
        assert b.rotation == 0
        upright = [np.rot90(f, a.rotation // 90) for f in a.frames]
        ph, pw = upright[0].shape[:2]
        assert (b.width, b.height) == (2 * pw, ph + ph % 2)
        # Compare below the labels, and away from the seam: with an odd panel width the seam
        # splits a 4:2:0 chroma pair, so its two columns share colour from both panels.
        rows = slice(20, ph)
        for x, y in zip(upright, b.frames):
            assert psnr(x[rows, : pw - 1], y[rows, : pw - 1]) > 35  # the input
            assert psnr(x[rows, 1:], y[rows, pw + 1 : 2 * pw]) > 35  # the identity's output


def test_a_random_student_changes_the_pictures(video, tmp_path, probe, random_student):
    # The counterpart of the identity checks above: they would notice a model that does something.
    dst = tmp_path / "out.mp4"
    process_file(video, dst, model=random_student(), device="cpu", progress=False)
    a, b = probe(video), probe(dst)
    assert np.mean([psnr(x, y) for x, y in zip(a.frames, b.frames)]) < 30


def test_strength_zero_passes_the_video_through(video, tmp_path, probe, random_student):
    dst = tmp_path / "out.mp4"
    process_file(video, dst, model=random_student(), device="cpu", strength=0.0, progress=False)
    a, b = probe(video), probe(dst)
    assert min(psnr(x, y) for x, y in zip(a.frames, b.frames)) > 35


@pytest.mark.parametrize("suffix, container", [(".mkv", "matroska"), (".mov", "mov"), (".m4v", "mp4")])
def test_the_output_container_follows_the_suffix(video_with_audio, tmp_path, probe, suffix, container):
    dst = tmp_path / f"out{suffix}"
    process_file(video_with_audio, dst, model="unsharp", device="cpu", preset="ultrafast", progress=False)
    with av.open(str(dst)) as c:
        assert container in c.format.name
        assert c.streams.video[0].codec_context.name == "h264"
    a, b = probe(video_with_audio), probe(dst)
    assert b.times == pytest.approx(a.times, abs=1e-6)
    assert b.audio == a.audio


def test_an_existing_output_is_replaced_only_with_overwrite(video, tmp_path, probe):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"old")
    with pytest.raises(LivesharpError, match="already exists"):
        process_file(video, dst, model="unsharp", device="cpu", progress=False)
    assert dst.read_bytes() == b"old"
    process_file(video, dst, model="unsharp", device="cpu", overwrite=True, progress=False)
    assert len(probe(dst).frames) == 20


def test_batch_below_one_is_an_error(video, tmp_path):
    with pytest.raises(LivesharpError, match="--batch"):
        process_file(video, tmp_path / "out.mp4", model="unsharp", batch=0)


class FailsMidway(Student):
    """A tiny student that fails once the pipeline has started writing the output.

    It waits until the hidden partial file exists, so the test proves that file is cleaned up.
    ``fail`` is called in the inference thread: raise to fail, or interrupt the main thread.
    """

    def __init__(self, folder: Path, fail):
        super().__init__(VARIANTS["tiny"])
        self.folder, self.fail, self.calls = folder, fail, 0

    def fused(self):
        return self  # the runner runs this network itself, so its calls are counted here

    def forward(self, x):
        self.calls += 1
        if self.calls > 3:
            deadline = time.monotonic() + 10
            while not any(self.folder.glob(".*livesharp-partial-*")) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert any(self.folder.glob(".*livesharp-partial-*")), "the writer never started"
            self.fail()
        return super().forward(x)


def _raise(exc):
    def fail():
        raise exc

    return fail


def _interrupt_once():
    done = []

    def fail():
        if not done:  # what Ctrl-C does: KeyboardInterrupt in the main thread, once
            done.append(True)
            _thread.interrupt_main()

    return fail


@pytest.mark.parametrize(
    "fail, expected",
    [
        (_raise(RuntimeError("out of memory")), RuntimeError),
        (_raise(KeyboardInterrupt()), KeyboardInterrupt),
        (_interrupt_once(), KeyboardInterrupt),
    ],
    ids=["error-in-a-stage", "interrupt-in-a-stage", "ctrl-c"],
)
def test_a_failure_midway_leaves_no_output_and_no_partial_file(video, tmp_path, fail, expected, ctrl_c):
    before = sha256(video)
    dst = tmp_path / "out.mp4"
    net = FailsMidway(tmp_path, fail)
    with pytest.raises(expected):
        # torch: the failure is raised from the network's forward, which only torch calls per batch
        process_file(video, dst, model=net, device="cpu", backend="torch", batch=1, preset="ultrafast", progress=False)
    assert net.calls > 3
    assert not dst.exists()
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [video.name]
    assert sha256(video) == before


def test_abort_gives_back_the_file_without_finishing_it(video, tmp_path):
    from livesharp.io import VideoReader, VideoWriter

    reader = VideoReader(video)
    writer = VideoWriter(tmp_path / "out.mp4", reader.info, preset="ultrafast")
    for i, f in enumerate(reader.frames()):
        writer.write(f.rgb, f.pts, f.duration)
        if i == 3:
            break
    reader.close()
    writer.abort()
    assert writer.container is None
    writer.abort()  # twice, or after close(): nothing left to give back
    writer.close()
    (tmp_path / "out.mp4").unlink()  # closed: on every OS the caller can remove it


# --- an output that appears while the run is writing ---------------------------------------


class WritesTheOutput(Student):
    """An identity student that, on its first call, puts a file where the output will go: what
    a user (or a second run) does while a long job is busy."""

    def __init__(self, target: Path):
        super().__init__(VARIANTS["tiny"])
        self.target, self.calls = target, 0
        with torch.no_grad():
            self.ending.weight.zero_()
            self.ending.bias.zero_()

    def forward(self, x):
        self.calls += 1
        if self.calls == 1:
            self.target.write_bytes(b"precious")
        return super().forward(x)


def test_an_output_that_appears_during_the_run_is_not_replaced(video, tmp_path, probe):
    dst = tmp_path / "out.mp4"
    with pytest.raises(LivesharpError, match="appeared while livesharp was writing") as e:
        process_file(video, dst, model=WritesTheOutput(dst), device="cpu", backend="torch", preset="ultrafast", progress=False)
    assert dst.read_bytes() == b"precious"
    kept = tmp_path / "out.livesharp-not-replaced.mp4"
    assert str(kept) in str(e.value) and "--overwrite" in str(e.value)
    assert len(probe(kept).frames) == 20  # the finished work is not thrown away
    assert leftovers(tmp_path) == []


def test_an_output_that_appears_during_the_run_is_replaced_with_overwrite(video, tmp_path, probe):
    dst = tmp_path / "out.mp4"
    process_file(video, dst, model=WritesTheOutput(dst), device="cpu", backend="torch", preset="ultrafast", overwrite=True, progress=False)
    assert len(probe(dst).frames) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([video.name, dst.name])


def test_an_image_output_that_appears_during_the_run_is_not_replaced(tmp_path):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(src), np.full((40, 48, 3), 128, np.uint8))
    with pytest.raises(LivesharpError, match="appeared while livesharp was writing"):
        process_image(src, dst, model=WritesTheOutput(dst), device="cpu", backend="torch")
    assert dst.read_bytes() == b"precious"
    assert cv2.imread(str(tmp_path / "out.livesharp-not-replaced.png")).shape == (40, 48, 3)
    assert leftovers(tmp_path) == []


def test_a_240_character_output_name_is_written(video, tmp_path, probe):
    dst = tmp_path / ("s" * 236 + ".mp4")
    process_file(video, dst, model="unsharp", device="cpu", preset="ultrafast", progress=False)
    assert len(probe(dst).frames) == 20
    assert leftovers(tmp_path) == []


# --- a full disk ----------------------------------------------------------------------------


class FullDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does (ENOSPC), flushes included."""

    def __init__(self, path: str, room: int):
        self.f, self.room = open(path, "w+b"), room

    def write(self, data) -> int:
        if self.f.tell() + len(data) > self.room:
            raise OSError(28, "No space left on device")
        return self.f.write(data)

    def seek(self, *args):
        return self.f.seek(*args)

    def tell(self):
        return self.f.tell()

    def read(self, n=-1):
        return self.f.read(n)

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


@pytest.mark.parametrize("short", [0.9, 200], ids=["full-early", "full-for-the-trailer"])
def test_a_full_disk_is_one_error_naming_the_output_and_leaves_nothing(video, tmp_path, monkeypatch, short):
    real_open = av.open
    reference = tmp_path / "sub" / "whole.mp4"
    reference.parent.mkdir()
    process_file(video, reference, model="unsharp", device="cpu", preset="ultrafast", progress=False)
    size = reference.stat().st_size
    room = int(size * (1 - short)) if short < 1 else size - short  # 200 bytes short: the index at the end does not fit

    def open_on_a_full_disk(target, mode="r", **kwargs):
        if mode == "w" and isinstance(target, str) and Path(target).parent == tmp_path:
            return real_open(FullDisk(target, room), mode, **kwargs)
        return real_open(target, mode, **kwargs)

    monkeypatch.setattr(av, "open", open_on_a_full_disk)
    dst = tmp_path / "out.mp4"
    with pytest.raises(LivesharpError) as e:
        process_file(video, dst, model="unsharp", device="cpu", preset="ultrafast", progress=False)
    message = str(e.value)
    assert "free disk space" in message and str(dst) in message and "partial" not in message, message
    assert not dst.exists() and leftovers(tmp_path) == []


def test_temp_files_of_killed_runs_are_removed_and_said_so(video, tmp_path, probe, livesharp_warnings):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".out.livesharp-partial-{gone}-0.mp4"  # what a SIGKILLed run leaves
    running = tmp_path / f".out.livesharp-partial-{os.getppid()}-0.mp4"  # a run whose process is alive
    other = tmp_path / f".other.livesharp-partial-{gone}-0.mp4"  # another target's
    for p in (stale, running, other):
        p.write_bytes(b"half")
    process_file(video, tmp_path / "out.mp4", model="unsharp", device="cpu", preset="ultrafast", progress=False)
    assert not stale.exists() and running.exists() and other.exists()
    warnings = livesharp_warnings
    assert len(warnings) == 1 and "killed run" in warnings[0] and stale.name in warnings[0], warnings
    assert len(probe(tmp_path / "out.mp4").frames) == 20


def test_max_frames_stops_early_and_on_frame_sees_every_frame_in_order_in_the_calling_thread(video, tmp_path, probe, identity_student):
    import threading

    seen = []

    def on_frame(frame, sharpened, written):
        seen.append((frame.pts, threading.current_thread() is threading.main_thread(), sharpened.shape, written.shape))

    out = tmp_path / "out.mp4"
    r = process_file(video, out, model=identity_student(), device="cpu", side_by_side=True, batch=2, max_frames=3, on_frame=on_frame, progress=False)
    assert r.frames == 3 and r.model_seconds > 0
    assert len(probe(out).frames) == 3
    a = probe(video)
    h, w = a.height, a.width
    assert len(a.frames) > 3
    assert [s[0] for s in seen] == sorted(s[0] for s in seen) and len(seen) == 3
    assert all(main and shape == (h, w, 3) and pair == (h, 2 * w, 3) for _, main, shape, pair in seen)


def test_an_on_frame_that_fails_stops_the_run_and_leaves_nothing(video, tmp_path):
    def on_frame(frame, sharpened, written):
        raise RuntimeError("scoring broke")

    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="scoring broke"):
        process_file(video, out, model="unsharp", device="cpu", on_frame=on_frame)
    assert not out.exists() and leftovers(tmp_path) == []


def test_max_frames_below_one_is_an_error(video, tmp_path):
    with pytest.raises(LivesharpError, match="max_frames=0"):
        process_file(video, tmp_path / "out.mp4", model="unsharp", max_frames=0)


@pytest.mark.parametrize("options", [{"model": "unsharp"}, {"strength": 0.5}, {"device": "cpu", "backend": "torch"}])
def test_an_open_sharpener_and_model_options_together_are_an_error(video, tmp_path, options):
    from livesharp.engine import Sharpener

    picture = tmp_path / "in.png"
    cv2.imwrite(str(picture), np.zeros((8, 8, 3), np.uint8))
    with Sharpener(model="unsharp") as s:
        for run, src, dst in ((process_file, video, tmp_path / "out.mp4"), (process_image, picture, tmp_path / "out.png")):
            with pytest.raises(LivesharpError, match=f"pass either sharpener= or {next(iter(options))}="):
                run(src, dst, sharpener=s, **options)
            assert not dst.exists()
        # the open one is still the caller's, and still works
        assert process_image(picture, tmp_path / "out.png", sharpener=s) == tmp_path / "out.png"


@pytest.mark.parametrize("name, fmt", [("photo.png", "PNG"), ("photo.jpg", "MJPEG"), ("photo.webp", "WEBP"), ("named_like_a_video.mp4", "PNG")])
def test_a_still_image_is_refused_by_its_content_pointing_at_livesharp_image(video, tmp_path, name, fmt):
    """FFmpeg opens a picture as a one-frame video: `file` would write a one-frame clip. What it
    is comes from its content (FFmpeg's image demuxers), so a PNG named .mp4 is caught too."""
    from click.testing import CliRunner

    from livesharp.cli import cli

    folder = tmp_path / "stills"
    folder.mkdir()
    src = folder / name
    picture = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    ok, data = cv2.imencode(".png" if name.endswith(".mp4") else Path(name).suffix, picture)
    src.write_bytes(data.tobytes())
    with pytest.raises(LivesharpError, match=rf"a still image \({fmt}\), not a video; sharpen it with: livesharp image "):
        process_file(src, folder / "out.mp4", model="unsharp")
    r = CliRunner().invoke(cli, ["file", str(src), str(folder / "out.mp4"), "--model", "unsharp"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "livesharp image" in r.output, r.output
    assert sorted(p.name for p in folder.iterdir()) == [name]  # nothing written
    # an image's own kind of output name: still the pointer to livesharp image, not "unknown output type"
    r = CliRunner().invoke(cli, ["file", str(src), str(folder / ("sharp" + Path(name).suffix)), "--model", "unsharp"])
    assert r.exit_code == 1 and "livesharp image" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    process_file(video, tmp_path / "out.mp4", model="unsharp", max_frames=2)  # a video still passes

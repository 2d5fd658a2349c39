"""The live path (livesharp/live.py): run_camera with a synthetic source, run_live and `cam` with a
file as the camera, and the virtual camera.

There is no webcam and no v4l2loopback device on test machines, so the camera is replaced by a
synthetic source and pyvirtualcam's Camera by a recorder: only at those boundaries.
"""

import json
import sys
import threading
import time
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

from livesharp import live, ops, sinks
from livesharp.cli import cli
from livesharp.engine import Sharpener
from livesharp.errors import LivesharpError
from livesharp.sources import captured_now


class SyntheticCamera:
    """Frames at ``fps`` whose first pixel carries their sequence number; optionally 'unplugged'
    after ``lose_after`` frames (read() then returns None and reopen() fails)."""

    is_camera = True

    def __init__(self, fps=100.0, size=(48, 64), lose_after=None):
        self.fps, self.size, self.lose_after = fps, size, lose_after
        self.width, self.height = size[1], size[0]
        self.n = 0
        self.closed = False

    def read(self):
        if self.lose_after is not None and self.n >= self.lose_after:
            time.sleep(0.01)
            return None
        time.sleep(1 / self.fps)
        f = np.full((*self.size, 3), 100, np.uint8)
        f[0, 0] = (self.n % 256, self.n // 256, 0)
        self.n += 1
        return captured_now(f)

    def reopen(self):
        return False

    def close(self):
        self.closed = True


class RecordingVirtualCam:
    """Stands in for pyvirtualcam.Camera: records what is sent and paces like it does."""

    def __init__(self, width, height, fps, **kwargs):
        self.width, self.height, self.fps = width, height, fps
        self.frames, self.times = [], []
        self.device = "/dev/video-recorder"
        self._next = None

    def send(self, frame):
        self.frames.append(frame.copy())
        self.times.append(time.monotonic())

    def sleep_until_next_frame(self):
        now = time.monotonic()
        self._next = (self._next or now) + 1 / self.fps
        if self._next > now:
            time.sleep(self._next - now)

    def close(self):
        pass


class SlowSharpener(Sharpener):
    """The unsharp baseline plus a fixed delay: inference that cannot keep up with capture."""

    def __init__(self, delay):
        super().__init__(model="unsharp", device="cpu")
        self.delay = delay

    def sharpen(self, rgb, strength=None):
        time.sleep(self.delay)
        return super().sharpen(rgb, strength)


def seq(frame):
    return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])


def test_latest_slot_keeps_only_the_newest():
    slot = live.LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get() == 4 and slot.dropped == 4
    assert slot.get(timeout=0.01) is None


def test_the_end_comes_after_the_last_item_not_instead_of_it():
    slot = live.LatestSlot()
    slot.put(7)
    slot.put(live.END)
    assert slot.get() == 7 and slot.get() is live.END and slot.get(timeout=0.01) is live.END
    assert slot.dropped == 0


def test_virtual_camera_gets_ordered_rgb_frames_at_the_target_rate():
    cam = SyntheticCamera(fps=100)
    vcam = RecordingVirtualCam(64, 48, fps=25)
    s = Sharpener(model="unsharp", device="cpu", strength=0.0)  # passthrough keeps the sequence pixel
    r = live.run_camera(cam, sharpener=s, virtual=vcam, max_frames=20)
    assert r.frames == 20
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in vcam.frames)
    numbers = [seq(f) for f in vcam.frames]
    assert numbers == sorted(numbers)  # never out of order (repeats allowed: the last frame is resent)
    gaps = np.diff(vcam.times)
    assert np.median(gaps) == pytest.approx(1 / 25, rel=0.25)
    assert cam.closed


def test_slow_inference_drops_frames_and_latency_stays_bounded(tmp_path):
    cam = SyntheticCamera(fps=100)
    r = live.run_camera(cam, sharpener=SlowSharpener(0.05), max_frames=15)
    assert r.frames == 15
    assert r.dropped > 10  # capture made ~100 fps, inference took ~20 fps
    # Only the newest frame waits: latency is about one inference, never a growing queue.
    assert max(r.latency_ms[3:]) < 4 * 50, r.latency_ms
    assert np.mean(r.latency_ms[-5:]) < 2 * np.mean(r.latency_ms[3:8]) + 20


def test_lost_camera_keeps_the_virtual_camera_alive_then_stops_cleanly():
    cam = SyntheticCamera(fps=100, lose_after=5)
    vcam = RecordingVirtualCam(64, 48, fps=50)
    threads_before = threading.active_count()
    with pytest.raises(LivesharpError, match="camera was lost"):
        live.run_camera(cam, sharpener=Sharpener(model="unsharp", device="cpu", strength=0.0), virtual=vcam, lost_timeout=0.5)
    assert len(vcam.frames) > 10  # the last frame kept going out while waiting for the camera
    assert not np.array_equal(vcam.frames[-1], vcam.frames[0])  # with the "camera lost" notice drawn on it
    time.sleep(0.2)
    assert threading.active_count() <= threads_before and cam.closed


def test_cam_from_a_video_file_writes_stats(video, tmp_path):
    stats = tmp_path / "s.jsonl"
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--no-preview", "--model", "unsharp", "--max-frames", "8", "--stats", str(stats)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [row["frame"] for row in rows] == list(range(1, 9))
    assert all(row["latency_ms"] >= 0 for row in rows)
    assert all(row["scale"] == 1.0 for row in rows)  # the unsharp baseline keeps up at full size
    assert all(row["precision"] == "none" for row in rows)  # no network: no arithmetic to choose
    assert "8 frames" in r.output and "latency mean" in r.output


def fake_pyvirtualcam(camera_cls):
    mod = types.ModuleType("pyvirtualcam")
    mod.Camera = camera_cls
    mod.PixelFormat = types.SimpleNamespace(RGB="RGB")
    return mod


def test_cam_virtual_through_the_cli_sends_frames(video, monkeypatch):
    made = []

    def camera(width, height, fps, fmt, device=None, print_fps=False):
        made.append(RecordingVirtualCam(width, height, fps))
        return made[-1]

    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake_pyvirtualcam(camera))
    monkeypatch.setattr(sinks, "require_virtual_camera", lambda: None)  # stands in for a loopback device, which cannot exist here
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--virtual", "--no-preview", "--model", "unsharp", "--max-frames", "5"])
    assert r.exit_code == 0, r.output
    assert len(made) == 1 and len(made[0].frames) >= 5
    assert made[0].frames[0].shape == (made[0].height, made[0].width, 3)


def test_virtual_without_a_backend_prints_the_modprobe_line(video, monkeypatch):
    def camera(*a, **k):
        raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99].")

    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake_pyvirtualcam(camera))
    monkeypatch.setattr(sinks, "require_virtual_camera", lambda: None)  # the early check passed; opening is what fails
    monkeypatch.setattr(sys, "platform", "linux")
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--virtual", "--no-preview", "--model", "unsharp"])
    assert r.exit_code == 1
    line = r.output.strip().splitlines()[-1]
    assert "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=LiveSharp" in line
    assert "Traceback" not in r.output


def test_virtual_without_the_extra_says_how_to_install(video, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # import fails as if not installed
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--virtual", "--no-preview", "--model", "unsharp"])
    assert r.exit_code == 1
    assert 'pip install ".[virtualcam]"' in r.output and "GPL-2.0" in r.output


@pytest.mark.parametrize("extra", [False, True])
def test_virtual_is_refused_before_the_camera_opens_or_the_model_loads(monkeypatch, tmp_path, extra):
    """Without the extra, or on Linux without a loopback device (neither exists here: a stand-in
    module and the platform are set), the one line comes first: the missing camera below is
    never looked at, and no model is opened."""
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake_pyvirtualcam(lambda *a, **k: None) if extra else None)
    monkeypatch.setattr(sys, "platform", "linux")
    (tmp_path / "sys" / "module").mkdir(parents=True)  # a sysfs with no v4l2loopback loaded, nor installed
    for name, where in (("SYS", "sys"), ("LIB_MODULES", "lib"), ("ETC", "etc")):
        monkeypatch.setattr(sinks, name, tmp_path / where)
    opened = []
    monkeypatch.setattr(live, "run_live", lambda *a, **k: opened.append(1))
    r = CliRunner().invoke(cli, ["cam", "--camera", "/dev/video97", "--virtual", "--no-preview"])
    assert r.exit_code == 1 and not opened and "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and ("modprobe v4l2loopback" in lines[0] if extra else 'pip install ".[virtualcam]"' in lines[0]), r.output


def test_missing_camera_lists_what_was_found():
    r = CliRunner().invoke(cli, ["cam", "--camera", "/dev/video97", "--no-preview", "--model", "unsharp"])
    assert r.exit_code == 1
    assert "no such camera" in r.output and "--camera FILE" in r.output


def test_devices_works_without_a_camera():
    r = CliRunner().invoke(cli, ["devices"])
    assert r.exit_code == 0
    assert "cameras:" in r.output and "virtual camera:" in r.output


def test_cam_flags_map_to_run_camera(video, monkeypatch):
    seen = {}

    def fake_run(source, **kw):
        seen.update(kw, source=source)
        return live.LiveResult(0, 1.0, 0, [])

    monkeypatch.setattr(live, "run_camera", fake_run)
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--no-preview", "--model", "unsharp", "--strength", "1.5", "--side-by-side", "--max-frames", "3"])
    assert r.exit_code == 0, r.output
    assert seen["max_frames"] == 3 and seen["side_by_side"] is True and seen["preview"] is None and seen["virtual"] is None
    assert seen["sharpener"].strength == 1.5 and seen["sharpener"].name == "unsharp"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_stop_cleanly_with_exit_0(video, tmp_path, sig, ctrl_c):
    """A real process, a real signal: threads stop, the stats file is complete, the summary prints."""
    import signal
    import subprocess

    stats = tmp_path / "s.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "livesharp", "cam", "--camera", str(video), "--loop", "--no-preview",
                             "--model", "unsharp", "--stats", str(stats)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # The stats file is written under a hidden name until the session ends: wait until it has rows.
    while not any(p.stat().st_size for p in tmp_path.glob(".s.livesharp-partial-*")) and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until frames are flowing
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "frames in" in err and "Traceback" not in err
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    assert rows and [r["frame"] for r in rows] == list(range(1, len(rows) + 1))


# A live session in a process of its own, so the signal reaches nobody else (not pytest).
BETWEEN_FRAMES = """
import os, signal, threading, time
import numpy as np
from livesharp import live
from livesharp.engine import Sharpener
from livesharp.sources import captured_now

class Camera:
    is_camera = True
    def read(self):
        time.sleep(0.01)
        return captured_now(np.full((48, 64, 3), 100, np.uint8))
    def reopen(self):
        return False
    def close(self):
        pass

class Virtual:  # stands in for the v4l2loopback device, which cannot exist here
    started = finished = 0
    def send(self, frame):
        self.started += 1
        time.sleep(0.02)  # most of the output stage's time: where a signal lands
        self.finished += 1
    def sleep_until_next_frame(self):
        pass

vcam, before = Virtual(), signal.getsignal(signal.SIGINT)
sharpener = Sharpener(model="unsharp", device="cpu")
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
r = live.run_camera(Camera(), sharpener=sharpener, virtual=vcam)
print(r.frames, vcam.started, vcam.finished, signal.getsignal(signal.SIGINT) is before)
"""


def test_ctrl_c_ends_a_session_between_frames_never_inside_one(ctrl_c):
    """A signal that interrupted the output stage wherever it was could land inside a lock's
    `with` (the other stages then wait for ever) or halfway through a frame sent out."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", BETWEEN_FRAMES],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    frames, started, finished, restored = r.stdout.split()
    assert int(frames) > 0 and started == finished and restored == "True", r.stdout


def test_a_camera_that_fails_to_open_leaves_opencvs_log_level_as_it_was(monkeypatch):
    import cv2

    from livesharp import sources

    class Closed:
        def __init__(self, *args):
            seen.append(cv2.utils.logging.getLogLevel())

        def isOpened(self):
            return False

        def release(self):
            pass

    seen = []
    monkeypatch.setattr(cv2, "VideoCapture", Closed)
    before = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_INFO)
    try:
        with pytest.raises(LivesharpError, match="cannot be opened"):
            sources.CameraSource(97)
        assert seen == [cv2.utils.logging.LOG_LEVEL_ERROR]  # quiet while the camera opens...
        assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_INFO  # ...and only then
    finally:
        cv2.utils.logging.setLogLevel(before)


class KeyPreview:
    """Stands in for the preview window: presses ``keys`` one per frame shown, records the rest."""

    def __init__(self, keys):
        self.keys, self.shown = list(keys), []

    def show(self, frame, hud):
        self.shown.append((frame.shape, hud[-1]))
        return self.keys.pop(0) if self.keys else "q"


def test_hotkeys_change_the_sessions_controls_not_the_sharpener():
    s = Sharpener(model="unsharp", device="cpu", strength=1.0)
    preview = KeyPreview(["+", "+", "-", " ", "s", None])
    live.run_camera(SyntheticCamera(fps=100), sharpener=s, preview=preview)
    assert s.strength == 1.0  # the main thread never writes what the inference thread reads
    huds = [h for _, h in preview.shown]
    assert [h.split("strength ")[1][:3] for h in huds] == ["1.0", "1.1", "1.2", "1.1", "1.1", "1.1", "1.1"]
    assert [h.endswith("(off)") for h in huds] == [False] * 4 + [True] * 3
    assert [shape[1] for shape, _ in preview.shown] == [64] * 5 + [128] * 2  # s: side by side


def test_a_batch_may_carry_its_own_strength():
    f = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    with Sharpener("unsharp", device="cpu", strength=1.0) as s, Sharpener("unsharp", device="cpu", strength=1.5) as ref:
        np.testing.assert_array_equal(s.sharpen(f, 1.5), ref.sharpen(f))
        assert s.strength == 1.0
        with pytest.raises(LivesharpError, match="--strength"):
            s.sharpen(f, 2.5)


def test_cam_is_a_shim_over_run_live(video, monkeypatch):
    monkeypatch.setattr(sinks, "require_virtual_camera", lambda: None)  # stands in for a loopback device, which cannot exist here
    with mock.patch("livesharp.live.run_live", autospec=True, return_value=live.LiveResult(3, 1.0, 0, [5.0])) as run:
        r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--size", "640x480", "--fps", "25", "--no-preview", "--virtual", "--loop",
                                     "--model", "unsharp", "--strength", "0.5", "--side-by-side", "--max-frames", "3", "--stats", "s.jsonl",
                                     "--no-detail"])
    assert r.exit_code == 0, r.output
    args, kw = run.call_args
    assert args == (str(video),)
    assert {k: v for k, v in kw.items() if k != "status"} == dict(
        size=(640, 480), fps=25, loop=True, virtual=True, preview=False, side_by_side=True, model="unsharp", device="auto",
        backend="auto", precision="auto", strength=0.5, detail=False, max_frames=3, stats="s.jsonl", overwrite=False, scale="auto")
    assert "3 frames" in r.output


@pytest.mark.parametrize("flag, expected", [([], "auto"), (["--scale", "0.75"], "0.75"), (["--scale", "0.375"], "0.375"), (["--scale", "1"], "1")])
def test_cam_scale_defaults_to_auto_and_passes_a_fixed_one_through(video, flag, expected):
    with mock.patch("livesharp.live.run_live", autospec=True, return_value=live.LiveResult(3, 1.0, 0, [5.0])) as run:
        r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--no-preview", "--model", "unsharp", *flag])
    assert r.exit_code == 0, r.output
    assert run.call_args.kwargs["scale"] == expected


def test_a_bad_scale_is_one_error_line(video):
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--no-preview", "--scale", "0.3"])
    assert r.exit_code == 2 and "Traceback" not in r.output and "'0.3' is not one of" in r.output
    with pytest.raises(LivesharpError, match=r"^--scale 0.3: use auto, 1, 0.75, 0.5, 0.375$"):
        live.run_live(str(video), preview=False, model="unsharp", scale=0.3)


def test_run_live_from_a_file_camera_reports_what_it_opened(video, tmp_path):
    lines = []
    r = live.run_live(str(video), preview=False, model="unsharp", max_frames=6, stats=tmp_path / "s.jsonl", status=lines.append)
    assert r.frames == 6 and len(r.latency_ms) == 6
    assert lines and lines[0].startswith(f"file {video.name}: 64x48@10; unsharp warmed up at 64x48 in ")
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 6  # closed, so flushed, when run_live returned


def test_split_into_the_virtual_camera_is_composed_at_its_size(monkeypatch):
    # Spy on the real side_by_side (it still runs): the pair must never be built twice as wide.
    widths = []
    real = ops.side_by_side
    monkeypatch.setattr(ops, "side_by_side", lambda *a, **k: widths.append(real(*a, **k).shape[1]) or real(*a, **k))
    for width in (64, 63):
        cam = SyntheticCamera(fps=100, size=(48, width))
        vcam = RecordingVirtualCam(width, 48, fps=50)
        live.run_camera(cam, sharpener=Sharpener(model="unsharp", device="cpu"), virtual=vcam, side_by_side=True, max_frames=5)
        assert vcam.frames and all(f.shape == (48, width, 3) for f in vcam.frames)
    assert widths and max(widths) <= 64


def test_split_without_a_virtual_camera_shows_input_and_result_side_by_side():
    cam = SyntheticCamera(fps=100)
    preview = KeyPreview([None, None])
    live.run_camera(cam, sharpener=Sharpener(model="unsharp", device="cpu"), preview=preview, side_by_side=True)
    assert [shape for shape, _ in preview.shown] == [(48, 128, 3)] * 3


def test_a_stats_file_that_cannot_be_written_is_one_error_line(video, tmp_path):
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--no-preview", "--model", "unsharp", "--stats", str(tmp_path / "no" / "s.jsonl")])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].startswith("error: --stats") and "Traceback" not in r.output


def test_a_failing_output_stops_the_threads_and_closes_the_source():
    class Broken(RecordingVirtualCam):
        def send(self, frame):
            raise ValueError("sink broke")

    cam = SyntheticCamera(fps=100)
    threads_before = threading.active_count()
    with pytest.raises(ValueError, match="sink broke"):
        live.run_camera(cam, sharpener=Sharpener(model="unsharp", device="cpu"), virtual=Broken(64, 48, 50))
    assert cam.closed and threading.active_count() <= threads_before


def test_no_frame_is_dropped_at_start_from_a_file_camera(video, tmp_path, random_student):
    """The model is warmed up at the capture size before the first frame is taken. Under
    OpenVINO (what auto picks here) the first call at a size compiles for it: 0.7 s at 64x48 on
    a 2-core machine, 7 frames of this 10 FPS clip, all dropped if it happened after capture."""
    from livesharp.model import save_student

    ckpt = tmp_path / "student.pt"
    save_student(random_student(), ckpt)
    stats = tmp_path / "s.jsonl"
    r = CliRunner().invoke(cli, ["cam", "--camera", str(video), "--no-preview", "--model", str(ckpt), "--stats", str(stats)])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first.startswith(f"file {video.name}: 64x48@10; student warmed up at 64x48 in ") and first.endswith(" ms"), first
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    # The start is what the warm-up protects: without it the first 7 frames were dropped. Later
    # frames may still be dropped on a machine busy with other work (a live source drops rather
    # than lags), so only the first half of the clip is required to be complete.
    assert [row["frame"] for row in rows][:10] == list(range(1, 11))
    assert all(row["dropped"] == 0 for row in rows) and "dropped 0" in r.output



def test_a_file_camera_hands_out_the_frame_type_files_do_stamped_with_its_capture_time(video):
    from livesharp.io import Frame, VideoReader
    from livesharp.sources import FileSource, capture_time

    reader = VideoReader(video)
    try:
        assert type(next(reader.frames())) is Frame
    finally:
        reader.close()
    with FileSource(video) as source:
        frame = source.read()
    assert type(frame) is Frame and frame.rgb.shape == (48, 64, 3) and frame.rgb.dtype == np.uint8
    assert 0 <= time.monotonic() - capture_time(frame) < 1


# --- the processing scale: the residual path and the governor ------------------------------


def test_scale_1_is_the_full_resolution_path_bit_for_bit(random_student):
    s = Sharpener(model=random_student(), device="cpu", backend="torch")
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    assert np.array_equal(s.sharpen(rgb, 0.8, scale=1.0), s.sharpen_batch([rgb], 0.8)[0])


def test_a_live_session_at_scale_1_outputs_what_sharpen_gives(random_student):
    s = Sharpener(model=random_student(), device="cpu", backend="torch")
    still = np.random.default_rng(3).integers(0, 256, (48, 64, 3), np.uint8)

    class StillCamera(SyntheticCamera):
        def read(self):
            time.sleep(1 / self.fps)
            return captured_now(still.copy())

    vcam = RecordingVirtualCam(64, 48, fps=50)
    r = live.run_camera(StillCamera(fps=30), sharpener=s, virtual=vcam, max_frames=3, governor=live.ScaleGovernor(33.3, fixed=1.0))
    expected = s.sharpen(still)
    assert r.scales == [1.0] * 3 and vcam.frames and all(np.array_equal(f, expected) for f in vcam.frames)


@pytest.mark.parametrize("scale", [0.75, 0.5, 0.375])
def test_an_identity_network_at_a_lower_scale_leaves_the_frame_unchanged(identity_student, scale):
    s = Sharpener(model=identity_student(), device="cpu", backend="torch")
    rgb = np.random.default_rng(1).integers(0, 256, (72, 128, 3), np.uint8)
    assert np.array_equal(s.sharpen(rgb, 1.0, scale=scale), rgb)


def test_the_upscaled_residual_leaves_regions_the_network_did_not_touch_unchanged():
    from livesharp.engine import add_upscaled_residual, shrink

    frame = np.random.default_rng(2).integers(0, 256, (72, 128, 3), np.uint8)
    small = shrink(frame, 0.5)
    out = small.copy()
    out[5:10, 5:10] = np.clip(out[5:10, 5:10].astype(int) + 20, 0, 255)  # the network changed one patch
    y = add_upscaled_residual(frame, small, out)
    assert np.array_equal(y[:, 40:], frame[:, 40:])  # far from the patch: the full-resolution frame itself
    assert (y[12:18, 12:18].astype(int) - frame[12:18, 12:18] >= 0).all() and (y != frame).any()


def fed(governor, cost, frames):
    """Feed ``governor`` ``frames`` frames whose inference costs ``cost(scale)`` ms; the scales used."""
    used = []
    for _ in range(frames):
        s = governor.scale
        used.append(s)
        governor.observe(s, cost(s))
    return used


def test_the_governor_lowers_the_scale_when_inference_slows_and_raises_it_back():
    fast = {1.0: 20.0, 0.75: 12.0, 0.5: 6.0}
    g = live.ScaleGovernor(33.3, dict(fast), patience=20)
    assert g.scale == 1.0
    slow = fed(g, lambda s: 3 * fast[s], 100)  # the machine gets busy: 60, 36, 18 ms against a 30 ms target
    assert g.scale == 0.5 and slow == sorted(slow, reverse=True)  # down step by step, never back up meanwhile
    assert slow.index(0.75) <= 10  # within a few frames, before a queue of late frames builds up
    back = fed(g, lambda s: fast[s], 200)
    assert back == sorted(back) and g.scale == 1.0


def test_the_governor_does_not_oscillate_on_a_steady_load():
    cost = {1.0: 40.0, 0.75: 27.0, 0.5: 11.0}  # at 30 FPS only 0.75 and below fit, 0.75 with little to spare
    g = live.ScaleGovernor(33.3, dict(cost), patience=10)
    used = fed(g, lambda s: cost[s], 600)
    assert set(used) == {0.75} and g.changes == 0


def test_a_raise_that_failed_corrects_the_warm_up_estimate_and_is_not_retried_at_the_same_load():
    # Warm-up predicted scale 1 much cheaper than it is: the raise is undone, and its cost learnt.
    g = live.ScaleGovernor(33.3, {1.0: 20.0, 0.75: 24.0, 0.5: 11.0}, patience=10)
    used = fed(g, lambda s: {1.0: 45.0, 0.75: 16.0, 0.5: 8.0}[s], 1000)
    raises = sum(1 for a, b in zip(used, used[1:]) if b > a)
    assert raises == 1 and set(used[-900:]) == {0.75}  # one try, then the corrected cost says no


def test_a_fixed_scale_never_moves():
    g = live.ScaleGovernor(33.3, fixed=0.5)
    assert set(fed(g, lambda s: 500.0, 50)) == {0.5}


class SleepySharpener(Sharpener):
    """The unsharp baseline plus a delay proportional to the pixels computed: ``delay`` seconds
    at full size, changed while running through ``set_delay``."""

    def __init__(self, delay):
        super().__init__(model="unsharp", device="cpu")
        self.delay = delay

    def sharpen(self, rgb, strength=None, scale=1.0):
        time.sleep(self.delay * scale * scale)
        return super().sharpen(rgb, strength)


def test_a_live_session_lowers_the_scale_when_the_runner_sleeps_more_and_raises_it_back():
    s = SleepySharpener(0.005)
    g = live.ScaleGovernor(50.0, live.calibrate(s, 48, 64), patience=8, settle=3)  # 20 FPS: a 45 ms target
    assert g.scale == 1.0
    vcam = RecordingVirtualCam(64, 48, fps=100)
    phases = iter([(15, 0.12), (40, 0.005)])  # after 15 frames: 120 ms at full size (0.5: 30 ms); then fast again
    until, delay = next(phases)

    class Switching(RecordingVirtualCam):
        def send(self, frame):
            nonlocal until, delay
            super().send(frame)
            if len(self.frames) == until:
                s.delay = delay
                until, delay = next(phases, (None, None))

    out = Switching(64, 48, fps=100)
    r = live.run_camera(SyntheticCamera(fps=100), sharpener=s, virtual=out, max_frames=70, governor=g)
    assert r.scales[:10] == [1.0] * 10
    slow = r.scales[15:55]
    assert 0.5 in slow  # lowered while inference was slow
    assert r.scales[-1] == 1.0  # and raised back once it was fast again
    assert "scale 1 (" in r.summary() and "0.5 (" in r.summary()


def test_the_hud_shows_the_scale_in_use():
    out = live.Output(live.Capture(SyntheticCamera(), 1.0), live.LatestSlot(), live.Controls(), name="tiny")
    assert "inference 12.0 ms at scale 0.75" in out.hud(live.Controls(), 12.0, 0.75)[1]


def test_run_live_says_whether_the_detail_stage_is_on(video):
    """The status line names the stage, and how to turn it off, so a user can tell what ran."""
    for detail, said in ((True, True), (False, False)):
        lines = []
        live.run_live(str(video), preview=False, model="tiny", backend="openvino", max_frames=2, detail=detail, status=lines.append)
        assert any("detail stage on (--no-detail: off)" in line for line in lines) is said, lines

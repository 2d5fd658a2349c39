"""Shared fixtures: tiny synthetic media made with PyAV in tmp_path, and a probe that reads it back.

Every file is written by the test session itself, so the suite runs anywhere and never reads
shared data. Videos are a moving checkerboard over a colour gradient: it has edges to sharpen,
flat areas, and changes every frame, so a dropped or reordered frame is visible.
"""

from __future__ import annotations


import os
import tempfile

# The CLI's thread policy, applied as the CLI applies it: before torch's OpenMP runtime loads
# (conftest imports torch below), so the tests run torch as a user's process does.
import livesharp.settings  # noqa: E402

livesharp.settings.apply_thread_policy()

import shutil  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_configure(config):
    # Exported graphs go to a cache folder of this test session's own, never the user's cache, and
    # the CLI subprocesses the tests start inherit it. Made here, not on import, as tests import
    # helpers from this module too; removed when the session ends (a quarter of a GB of graphs).
    cache = tempfile.mkdtemp(prefix="livesharp-test-cache-")
    os.environ["LIVESHARP_CACHE"] = cache
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))


def natural(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A picture with detail at every scale (noise blurred at several widths, summed: about 1/f):
    what the detail stage's statistics read on real frames, without shared data."""
    img = sum(cv2.GaussianBlur(rng.normal(size=(height, width, 3)).astype(np.float32), (0, 0), s) * s for s in (0.6, 1.5, 4, 10))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).round().astype(np.uint8)


def pattern(i: int, height: int, width: int) -> np.ndarray:
    """Frame ``i`` of the moving pattern: (height, width, 3) uint8 RGB."""
    y, x = np.mgrid[0:height, 0:width]
    checker = (((x + 2 * i) // 8 + (y + i) // 8) % 2).astype(np.float32)
    r = 40 + 150 * x / max(1, width - 1)
    g = 40 + 150 * y / max(1, height - 1)
    b = np.full_like(r, 30 + 6 * (i % 30))
    rgb = np.stack([r, g, b], axis=-1) + 50 * checker[..., None]
    return rgb.clip(0, 255).astype(np.uint8)


def tone(i: int, samples: int, rate: int) -> np.ndarray:
    """A 440 Hz stereo sine, (2, samples) float32 planar, continuing from packet ``i``."""
    t = (np.arange(samples) + i * samples) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([wave, wave])


def write_video(
    path: Path,
    *,
    size: tuple[int, int] = (64, 48),
    frames: int = 20,
    rate: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: bool = False,
    rotation: int = 0,
    pts_ms: list[int] | None = None,
) -> Path:
    """Write a synthetic video; ``size`` is (width, height).

    ``pts_ms`` gives every frame's timestamp in milliseconds (variable frame rate); otherwise
    frames are ``1/rate`` apart. ``audio`` adds an AAC track as long as the video.
    """
    width, height = size
    pts = pts_ms if pts_ms is not None else [round(1000 * i / rate) for i in range(frames)]
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        v.time_base = Fraction(1, 1000)
        v.codec_context.time_base = Fraction(1, 1000)
        if codec.startswith("libx264"):
            v.options = {"preset": "ultrafast", "crf": "10"}
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=16000, layout="stereo")
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(pattern(i, height, width), format="rgb24")
            frame.pts = t
            frame.time_base = Fraction(1, 1000)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            seconds = (pts[-1] + 1000 / rate) / 1000
            for i in range(int(seconds * 16000 / 1024)):
                af = av.AudioFrame.from_ndarray(tone(i, 1024, 16000), format="fltp", layout="stereo")
                af.sample_rate = 16000
                af.pts = i * 1024
                af.time_base = Fraction(1, 16000)
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return path


@dataclass
class Probe:
    """What a video file holds, decoded the plain way (no livesharp code involved)."""

    width: int
    height: int
    rotation: int
    pix_fmt: str
    duration: float | None  # the video stream's, else the container's (Matroska keeps only that)
    times: list[float] = field(default_factory=list)  # every frame's pts in seconds
    frames: list[np.ndarray] = field(default_factory=list)  # RGB uint8, as stored (not rotated)
    audio: list[bytes] = field(default_factory=list)  # audio packet payloads in file order


def remux(src: Path, dst: Path, *, fmt: str | None = None, shift: float = 0.0, options: dict | None = None,
          kinds: tuple[str, ...] | None = None) -> Path:
    """Copy every packet of ``src`` into ``dst`` (container by suffix or ``fmt``), the streams of
    ``kinds`` (default: all) ``shift`` seconds later."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options or {}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is None:
                continue
            if kinds is None or packet.stream.type in kinds:
                offset = round(Fraction(shift) / packet.time_base)
                packet.pts += offset
                packet.dts += offset
            packet.stream = streams[packet.stream.index]
            o.mux(packet)
    return dst


def int8_weight_range(xml) -> tuple[int, int]:
    """The smallest and largest integer weight of an int8 IR's quantized convolutions."""
    import openvino as ov

    values = [op.get_data() for op in ov.Core().read_model(str(xml)).get_ops()
              if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i8"]
    assert values, "no int8 weights"
    return min(int(v.min()) for v in values), max(int(v.max()) for v in values)


def probe(path: Path) -> Probe:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        duration = float(v.duration * v.time_base) if v.duration is not None else None
        if duration is None and c.duration is not None:
            duration = c.duration / av.time_base
        p = Probe(v.codec_context.width, v.codec_context.height, 0, v.codec_context.pix_fmt, duration)
        for packet in c.demux(*c.streams.video[:1], *c.streams.audio):
            if packet.stream.type == "audio":
                if packet.size:
                    p.audio.append(bytes(packet))
                continue
            for frame in packet.decode():
                if not p.frames:
                    p.rotation = int(frame.rotation or 0)
                p.times.append(float(frame.pts * frame.time_base))
                p.frames.append(frame.to_ndarray(format="rgb24"))
    return p


# Named inputs; each suffix is a container its codec can be stored in.
INPUTS = {
    "video": dict(name="plain.mp4"),
    "video_with_audio": dict(name="audio.mp4", audio=True),
    # x264 needs even sides for 4:2:0; ffv1 in 4:4:4 stores any size, losslessly.
    "odd_video": dict(name="odd.mkv", size=(65, 37), codec="ffv1", pix_fmt="yuv444p"),
    "rotated_video": dict(name="rotated.mp4", rotation=90, audio=True),
    "vfr_video": dict(name="vfr.mp4", pts_ms=[0, 40, 50, 150, 170, 300, 310, 320, 500, 540, 700, 720]),
    "video_10bit": dict(name="tenbit.mp4", pix_fmt="yuv420p10le"),
    "video_yuv444": dict(name="yuv444.mp4", pix_fmt="yuv444p"),
}


@pytest.fixture(scope="session")
def _made(tmp_path_factory):
    """Each named input, encoded once per session (encoding is most of a test's CPU time)."""
    root = tmp_path_factory.mktemp("media")
    cache: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in cache:
            kwargs = dict(INPUTS[key])
            cache[key] = write_video(root / kwargs.pop("name"), **kwargs)
        return cache[key]

    return get


def _copy(_made, tmp_path: Path, key: str) -> Path:
    # A private copy in the test's own folder: a test may check that its input is unchanged, and
    # the folder holds nothing else, so a leftover temp file is easy to spot.
    src = _made(key)
    return Path(shutil.copyfile(src, tmp_path / src.name))


@pytest.fixture
def video(_made, tmp_path):
    """64x48, 20 frames at 10 fps, H.264 yuv420p in .mp4, no audio."""
    return _copy(_made, tmp_path, "video")


@pytest.fixture
def video_with_audio(_made, tmp_path):
    """As ``video``, plus a 2-second AAC stereo track."""
    return _copy(_made, tmp_path, "video_with_audio")


@pytest.fixture
def odd_video(_made, tmp_path):
    """65x37, FFV1 yuv444p in .mkv: odd sides, which 4:2:0 H.264 cannot store."""
    return _copy(_made, tmp_path, "odd_video")


@pytest.fixture
def rotated_video(_made, tmp_path):
    """64x48 stored, with a display matrix that turns it 90 degrees; with audio."""
    return _copy(_made, tmp_path, "rotated_video")


@pytest.fixture
def vfr_video(_made, tmp_path):
    """12 frames at irregular times (variable frame rate), .mp4."""
    return _copy(_made, tmp_path, "vfr_video")


@pytest.fixture
def video_10bit(_made, tmp_path):
    """H.264 High 10, yuv420p10le."""
    return _copy(_made, tmp_path, "video_10bit")


@pytest.fixture
def video_yuv444(_made, tmp_path):
    """H.264 High 4:4:4, yuv444p."""
    return _copy(_made, tmp_path, "video_yuv444")


@pytest.fixture
def make_video(tmp_path):
    """``make_video(name, **kwargs)`` writes a synthetic video into tmp_path (see write_video)."""

    def make(name: str, **kwargs) -> Path:
        return write_video(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def ctrl_c():
    """SIGINT handled as an interactive terminal's Ctrl-C is, for this test and the processes it
    starts. A job started in the background without job control (``pytest &`` in a script, some CI
    runners) begins with SIGINT ignored, which Python and every child it starts keep: a Ctrl-C test
    would then test nothing. A handler, unlike an ignored signal, is reset to the default on exec,
    so a child Python installs its own."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(name="probe")
def probe_fixture():
    """``probe(path)`` decodes a file with plain PyAV: see Probe."""
    return probe


@pytest.fixture
def device():
    """The CUDA device; the test is skipped where torch sees no GPU."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device("cuda")

"""Live frame sources: a webcam, or a video file played in real time as a stand-in webcam.

A source hands out ``io.Frame``, the one frame type of livesharp, files included: an (H, W, 3)
uint8 RGB picture and, as its ``pts``, the moment it was captured (``captured_now``), so latency
is measured end to end. ``read()`` returns None when the source has ended (a file without
looping) or was lost (a camera unplugged).
"""

from __future__ import annotations

import glob
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .errors import LivesharpError
from .io import Frame, VideoReader, camera_file

# A live frame's pts: when it was captured, on time.monotonic_ns()'s clock (the clock of
# time.monotonic(), in these units), so any thread can take its age.
CAPTURE_TIME_BASE = Fraction(1, 1_000_000_000)


def captured_now(rgb: np.ndarray) -> Frame:
    """``rgb`` as a live frame captured at this moment."""
    return Frame(rgb, time.monotonic_ns())


def capture_time(frame: Frame) -> float:
    """When a live frame was captured, on ``time.monotonic()``'s clock (seconds)."""
    return float(frame.pts * CAPTURE_TIME_BASE)


class Closing:
    """``with`` for a live source or sink: ``close()`` on the way out, however the block is left
    (``live.run_live`` holds them all in one ExitStack). Closing twice is harmless."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class CameraInfo:
    index: int
    path: str
    name: str


def list_cameras() -> list[CameraInfo]:
    """Cameras the OS reports. On Linux these are the V4L2 capture nodes and their names;
    elsewhere OpenCV has no way to list them, so indices that open are reported."""
    found = []
    if sys.platform.startswith("linux"):
        for dev in sorted(glob.glob("/dev/video*"), key=lambda p: int("".join(filter(str.isdigit, p)) or 0)):
            index = int("".join(filter(str.isdigit, dev)) or 0)
            name_file = Path(f"/sys/class/video4linux/video{index}/name")
            name = name_file.read_text().strip() if name_file.exists() else "?"
            found.append(CameraInfo(index, dev, name))
        return found
    for index in range(4):  # pragma: no cover - Windows/macOS
        cap = cv2.VideoCapture(index)
        if cap.isOpened():
            found.append(CameraInfo(index, str(index), "camera"))
        cap.release()
    return found


def describe_cameras() -> str:
    cams = list_cameras()
    if not cams:
        return "no cameras found"
    return "cameras found: " + ", ".join(f"{c.index} ({c.path}, {c.name})" for c in cams)


def _backend() -> int:
    if sys.platform.startswith("linux"):
        return cv2.CAP_V4L2
    if sys.platform == "win32":  # pragma: no cover
        return cv2.CAP_DSHOW
    if sys.platform == "darwin":  # pragma: no cover
        return cv2.CAP_AVFOUNDATION
    return cv2.CAP_ANY  # pragma: no cover


@contextmanager
def _quiet_opencv():
    """OpenCV's warnings off for one camera call: it warns on stderr when a camera does not
    open or a read fails, and we report those ourselves, in one line. Only for the call: the
    level is process-wide, and the rest of a program may want OpenCV's warnings."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class CameraSource(Closing):
    """A webcam through OpenCV, asking for MJPEG at 720p and above (raw YUYV cannot carry 720p30
    over USB 2) and a one-frame driver buffer (stale frames are latency)."""

    is_camera = True  # lost frames mean "unplugged, try to reopen", not "the end"

    def __init__(self, device: int | str = 0, size: tuple[int, int] = (1280, 720), fps: float = 30):
        self.device, self.requested = device, (size, fps)
        self.cap = self._open()
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or fps)
        fourcc = int(self.cap.get(cv2.CAP_PROP_FOURCC))
        self.format = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\0") or "?"

    def _open(self):
        (w, h), fps = self.requested
        with _quiet_opencv():
            cap = cv2.VideoCapture(self.device, _backend())
        if not cap.isOpened():
            cap.release()
            raise LivesharpError(f"camera {self.device} cannot be opened ({describe_cameras()}); pass --camera INDEX|/dev/videoN, or --camera FILE to run on a video; livesharp demo shows it working without a camera")
        if h >= 720:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
        cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def describe(self) -> str:
        (w, h), fps = self.requested
        return f"camera {self.device}: asked {w}x{h}@{fps:g} , granted {self.width}x{self.height}@{self.fps:g} {self.format}"

    def read(self) -> Frame | None:
        with _quiet_opencv():
            ok, bgr = self.cap.read()
        t = time.monotonic_ns()  # before the conversion: it is part of the latency
        if not ok or bgr is None:
            return None
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t)

    def reopen(self) -> bool:
        """After the camera was lost: try once to get it back."""
        self.cap.release()
        try:
            self.cap = self._open()
        except LivesharpError:
            return False
        return True

    def close(self) -> None:
        self.cap.release()


class FileSource(Closing):
    """A video file played at its own frame rate, as a webcam would deliver it."""

    def __init__(self, path: str | Path, loop: bool = False):
        self.path, self.loop = Path(path), loop
        self._start()
        info = self.reader.info
        self.width, self.height, self.fps = info.width, info.height, float(info.rate)
        self.t0 = None  # when the first frame went out (time.monotonic())
        self.offset = 0.0  # seconds the loops before this one lasted
        self.end = 0.0  # where the last frame handed out ends, in seconds since the first

    def _start(self) -> None:
        self.reader = VideoReader(self.path, quiet=hasattr(self, "reader"))  # warnings once, not every loop
        self.frames = self.reader.frames()
        self.pts0 = None

    def describe(self) -> str:
        return f"file {self.path.name}: {self.width}x{self.height}@{self.fps:g}{' (looping)' if self.loop else ''}"

    def read(self) -> Frame | None:
        try:
            frame = next(self.frames)
        except StopIteration:
            self.reader.close()
            if not self.loop:
                return None
            # The next loop starts when this one's last frame has had its time: the clock runs
            # on across loops, so a one-frame file plays at its rate, not as fast as it decodes.
            self.offset = self.end
            self._start()
            frame = next(self.frames)
        tb = self.reader.info.time_base
        if self.t0 is None:
            self.t0 = time.monotonic()
        if self.pts0 is None:
            self.pts0 = frame.pts
        at = self.offset + float((frame.pts - self.pts0) * tb)
        self.end = at + (float(frame.duration * tb) if frame.duration else 1 / (self.fps or 30))
        delay = self.t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return captured_now(frame.rgb)

    def reopen(self) -> bool:
        return False

    def close(self) -> None:
        self.reader.close()


def open_source(camera: str, size: tuple[int, int] = (1280, 720), fps: float = 30, loop: bool = False):
    """``--camera`` as a user writes it: an index, a /dev/videoN path, or a video file."""
    if camera.isdigit():
        return CameraSource(int(camera), size, fps)
    if camera.startswith("/dev/video"):
        if not os.path.exists(camera):
            raise LivesharpError(f"{camera}: no such camera ({describe_cameras()}); pass --camera INDEX or --camera FILE")
        return CameraSource(camera, size, fps)
    path = camera_file(camera)
    if not path.exists():
        raise LivesharpError(f"--camera {camera}: neither a camera index, a /dev/videoN device nor a video file ({describe_cameras()})")
    return FileSource(path, loop=loop)

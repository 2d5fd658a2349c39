"""Live outputs: the virtual camera that video-call apps pick, the preview window, stats.

pyvirtualcam is GPL-2.0, so it is an optional extra (``pip install "livesharp[virtualcam]"``)
and imported only when ``--virtual`` is asked for.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from . import ops
from .errors import LivesharpError
from .sources import Closing

MODPROBE = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=LiveSharp"


def virtual_camera_help(reason: str = "") -> str:
    """How to get a virtual-camera backend on this OS, in one line."""
    why = f" ({reason.splitlines()[0]})" if reason else ""
    if sys.platform.startswith("linux"):
        return (f"no virtual camera device{why}. Load v4l2loopback: {MODPROBE} "
                f"(exclusive_caps=1 is what Chrome-based apps need), or run with --preview only")
    if sys.platform == "win32":  # pragma: no cover
        return f"no virtual camera backend{why}. Install OBS Studio (its virtual camera) or Unity Capture, or run with --preview only"
    return f"no virtual camera backend{why}. Install OBS Studio and start its virtual camera once, or run with --preview only"  # pragma: no cover


def virtual_camera_status() -> str:
    """One line for ``livesharp devices``."""
    try:
        import pyvirtualcam  # noqa: F401
    except ImportError:
        return 'not installed: pip install "livesharp[virtualcam]" (GPL-2.0 extra)'
    if sys.platform.startswith("linux"):
        loops = [p for p in sorted(Path("/sys/class/video4linux").glob("video*")) if "loopback" in _read(p / "name").lower() or "livesharp" in _read(p / "name").lower()]
        if not loops:
            return f"pyvirtualcam installed, but no v4l2loopback device: {MODPROBE}"
        return "ready: " + ", ".join(f"/dev/{p.name} ({_read(p / 'name')})" for p in loops)
    return "pyvirtualcam installed (backend found when a camera is opened)"  # pragma: no cover


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


class VirtualCamera(Closing):
    """A pyvirtualcam camera taking RGB frames, paced by ``sleep_until_next_frame``."""

    def __init__(self, width: int, height: int, fps: float, device: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise LivesharpError('--virtual needs the optional pyvirtualcam package (GPL-2.0): pip install "livesharp[virtualcam]"') from None
        try:
            self.cam = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device, print_fps=False)
        except RuntimeError as e:
            raise LivesharpError(virtual_camera_help(str(e))) from None
        self.width, self.height = width, height
        self.device = self.cam.device

    def send(self, rgb: np.ndarray) -> None:
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"virtual camera takes ({self.height}, {self.width}, 3) uint8 frames, got {rgb.shape} {rgb.dtype}")
        self.cam.send(rgb)

    def sleep_until_next_frame(self) -> None:
        self.cam.sleep_until_next_frame()

    def close(self) -> None:
        self.cam.close()


def has_display() -> bool:
    """Whether a window can be shown (Linux needs X11 or Wayland; other OSes always have one)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True  # pragma: no cover


class PreviewWindow(Closing):
    """An OpenCV window with a HUD and hotkeys. Must be driven from the main thread."""

    TITLE = "livesharp (q quit, +/- strength, space on/off, s split, h HUD)"

    def __init__(self):
        import cv2

        self.cv2 = cv2
        try:
            cv2.namedWindow(self.TITLE, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise LivesharpError(f"cannot open a preview window ({str(e).strip().splitlines()[-1]}); run with --no-preview") from None
        self.show_hud = True

    def show(self, rgb: np.ndarray, hud: list[str]) -> str | None:
        """Draw one frame; return the key pressed ('q', '+', '-', ' ', 's', 'h') or 'closed'."""
        img = ops.draw_hud(rgb, hud) if self.show_hud and hud else rgb
        self.cv2.imshow(self.TITLE, self.cv2.cvtColor(img, self.cv2.COLOR_RGB2BGR))
        key = self.cv2.waitKey(1) & 0xFF
        if self.cv2.getWindowProperty(self.TITLE, self.cv2.WND_PROP_VISIBLE) < 1:
            return "closed"
        if key in (ord("q"), 27):
            return "q"
        if key == ord("h"):
            self.show_hud = not self.show_hud
        ch = chr(key) if key != 255 else None
        return ch if ch in ("+", "=", "-", " ", "s", "h") else None

    def close(self) -> None:
        self.cv2.destroyWindow(self.TITLE)


class StatsWriter(Closing):
    """Per-frame timings as JSON lines, flushed as they come (to the hidden partial file `live.run_live` publishes at the end)."""

    def __init__(self, path: str | Path):
        try:
            self.file = open(path, "w")
        except OSError as e:
            raise LivesharpError(f"--stats {path}: cannot write it ({e.strerror}); check the folder") from None

    def write(self, record: dict) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:  # a full disk: one line, not a traceback
            raise LivesharpError(f"--stats: writing failed ({e.strerror}); check free disk space") from None

    def close(self) -> None:
        self.file.close()

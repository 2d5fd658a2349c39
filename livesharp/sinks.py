"""Live outputs: the virtual camera that video-call apps pick, the preview window, stats.

pyvirtualcam is GPL-2.0, so it is an optional extra (``pip install ".[virtualcam]"``) and
imported only when ``--virtual`` is asked for. ``virtual_camera_state`` says, per OS, what is
missing and how to fix it (``livesharp devices``); ``require_virtual_camera`` refuses early.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ops
from .errors import LivesharpError
from .sources import Closing

MODPROBE = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=LiveSharp"
EXTRA_MISSING = ('--virtual needs the optional pyvirtualcam package (GPL-2.0): '
                 'pip install ".[virtualcam]" in the livesharp source folder')
INSTALL_MODULE = ("install v4l2loopback first (Debian/Ubuntu: sudo apt install v4l2loopback-dkms; "
                  "other distributions: their v4l2loopback package)")
SECURE_BOOT = ('if modprobe says "Key was rejected by service" or "Operation not permitted", Secure Boot wants the module '
               "signed: DKMS signs it; enrol its key once (sudo mokutil --import /var/lib/dkms/mok.pub; Ubuntu: "
               "/var/lib/shim-signed/mok/MOK.der), reboot, confirm the enrolment, modprobe again")
AT_BOOT = ("to load it at every boot: the line v4l2loopback in /etc/modules-load.d/v4l2loopback.conf and "
           '"options v4l2loopback devices=1 exclusive_caps=1 card_label=LiveSharp" in /etc/modprobe.d/v4l2loopback.conf')
# Where the Linux checks look; tests point these at stand-in trees (no v4l2loopback on a CI machine).
SYS = Path("/sys")
LIB_MODULES = Path("/lib/modules")
ETC = Path("/etc")
_SECURE_BOOT_VAR = "firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


@dataclass(frozen=True)
class VirtualCameraState:
    """What ``cam --virtual`` would find here, and what to do about it.

    ready: True (a device is there), False (known missing), None (only opening one can tell: OBS on
    macOS and Windows is found by pyvirtualcam when the camera opens).
    """

    ready: bool | None
    summary: str
    fixes: tuple[str, ...] = ()


def virtual_camera_state() -> VirtualCameraState:
    """The virtual camera's state on this OS, found without opening anything (well under a second)."""
    try:
        import pyvirtualcam  # noqa: F401
    except ImportError:
        return VirtualCameraState(False, "pyvirtualcam not installed", ('pip install ".[virtualcam]" in the livesharp source folder (GPL-2.0 extra)',))
    if sys.platform.startswith("linux"):
        return _linux_state()
    if sys.platform == "darwin":
        obs = "OBS Studio 30+" if _macos_major() >= 13 else "OBS Studio 28+"
        return VirtualCameraState(None, "pyvirtualcam installed; on macOS it sends through OBS's virtual camera (found when cam --virtual starts)", (
            f"install {obs} (macOS 13+ needs 30+), start it once, Start then Stop Virtual Camera, quit",
            'apps list the output as "OBS Virtual Camera" (OBS\'s own name, not LiveSharp)'))
    return VirtualCameraState(None, "pyvirtualcam installed; on Windows it sends through OBS's virtual camera (found when cam --virtual starts)", (
        "install OBS Studio 28+, start it once, Start then Stop Virtual Camera, quit (or install Unity Capture)",
        'apps list the output as "OBS Virtual Camera" (OBS\'s own name, not LiveSharp)'))


def virtual_camera_status() -> str:
    """For ``livesharp devices``: the state on its first line, then one indented line per fix."""
    st = virtual_camera_state()
    return "\n".join([st.summary, *(f"  - {fix}" for fix in st.fixes)])


def require_virtual_camera() -> None:
    """Raise a one-line ``LivesharpError`` when ``cam --virtual`` is known not to work here: the
    pyvirtualcam extra missing, or on Linux no v4l2loopback device. Opens no camera and loads no
    model, so ``cam --virtual`` can call it before anything starts. Where only opening can tell
    (OBS on macOS and Windows), it passes and ``VirtualCamera`` reports a failure when it opens.
    """
    st = virtual_camera_state()
    if st.ready is not False:
        return
    if st.summary == "pyvirtualcam not installed":
        raise LivesharpError(EXTRA_MISSING)
    raise LivesharpError(virtual_camera_help(st.summary, st))


def virtual_camera_help(reason: str = "", state: VirtualCameraState | None = None) -> str:
    """How to get a virtual-camera backend on this OS, in one line."""
    why = f" ({reason.splitlines()[0]})" if reason else ""
    if sys.platform.startswith("linux"):
        steps = [f for f in (state or _linux_state()).fixes if f not in (SECURE_BOOT, AT_BOOT)] or [MODPROBE]
        return (f"no virtual camera device{why}: {'; '.join(steps)} (exclusive_caps=1 is what Chrome-based apps need); "
                "Secure Boot and loading at every boot: livesharp devices; or run with --preview only")
    if sys.platform == "darwin":
        obs = "30+" if _macos_major() >= 13 else "28+"
        return (f"no virtual camera backend{why}. Install OBS Studio {obs}, start it once, Start then Stop Virtual Camera, quit; "
                "the output is listed as \"OBS Virtual Camera\". Or run with --preview only")
    return (f"no virtual camera backend{why}. Install OBS Studio 28+ (or Unity Capture), start it once, Start then Stop Virtual "
            "Camera, quit; the output is listed as \"OBS Virtual Camera\". Or run with --preview only")


def _linux_state() -> VirtualCameraState:
    """From the most ready state down: a loopback device; the module loaded without one; the
    module installed but not loaded; not installed (modules.dep, which lists DKMS's builds too)."""
    if not (SYS / "module").is_dir():  # no sysfs (an unusual container): only opening can tell
        return VirtualCameraState(None, "pyvirtualcam installed; cannot read /sys to look for v4l2loopback", (MODPROBE,))
    devices = loopback_devices()
    boot = () if _loads_at_boot() else (AT_BOOT,)  # loaded by hand, it is gone after a reboot
    if devices:
        return VirtualCameraState(True, "ready: " + ", ".join(devices), boot)
    if (SYS / "module" / "v4l2loopback").is_dir():
        return VirtualCameraState(False, "v4l2loopback is loaded but made no device", (f"sudo modprobe -r v4l2loopback && {MODPROBE}", *boot))
    secure = " (Secure Boot is on: the module must be signed)" if _secure_boot_on() else ""
    installed = _module_installed()
    if installed is False:
        return VirtualCameraState(False, f"v4l2loopback is not installed{secure}", (INSTALL_MODULE, f"then {MODPROBE}", SECURE_BOOT, *boot))
    steps = (MODPROBE,) if installed else (f"{INSTALL_MODULE} if it is not", f"then {MODPROBE}")
    return VirtualCameraState(False, f"v4l2loopback is {'installed but ' if installed else ''}not loaded{secure}", (*steps, SECURE_BOOT, *boot))


def loopback_devices() -> list[str]:
    """The v4l2loopback devices, as "/dev/videoN (its label)". v4l2loopback gives each device a
    ``max_openers`` attribute; its label is card_label (default "Dummy video device (0x...)")."""
    found = []
    for p in sorted((SYS / "class" / "video4linux").glob("video*"), key=lambda p: int("0" + p.name[5:]) if p.name[5:].isdigit() else 0):
        name = _read(p / "name")
        if (p / "max_openers").exists() or "loopback" in name.lower() or "livesharp" in name.lower():
            found.append(f"/dev/{p.name} ({name})")
    return found


def _module_installed() -> bool | None:
    """Whether this kernel has a v4l2loopback module (modules.dep lists every installed one, DKMS's too)."""
    dep = LIB_MODULES / os.uname().release / "modules.dep"
    try:
        text = dep.read_text(errors="replace")
    except OSError:
        return None
    return "/v4l2loopback.ko" in text


def _loads_at_boot() -> bool:
    """Whether v4l2loopback is listed to load at boot (systemd's modules-load.d, Debian's /etc/modules)."""
    lists = [ETC / "modules", *sorted((ETC / "modules-load.d").glob("*.conf"))]
    return any(line.split("#")[0].strip() == "v4l2loopback" for f in lists for line in _read(f).splitlines())


def _secure_boot_on() -> bool:
    try:
        return (SYS / _SECURE_BOOT_VAR).read_bytes()[-1:] == b"\x01"  # 4 attribute bytes, then the value
    except OSError:
        return False


def _macos_major() -> int:
    try:
        return int(platform.mac_ver()[0].split(".")[0])
    except ValueError:
        return 0


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
            raise LivesharpError(EXTRA_MISSING) from None
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

"""The live mode: a webcam, or a video file played as one, sharpened into a virtual camera and/or
a preview window.

``run_live`` is ``livesharp cam`` as a library function: it opens the source, the engine and
the sinks, each a context manager in one ``ExitStack`` (whatever was opened is closed, in
reverse order, however the session ends), and runs the stages on them with ``run_camera``:

    capture (thread) -> LatestSlot -> infer (thread) -> LatestSlot -> output (calling thread)

A live source keeps only the newest frame (latency beats completeness): a stage that cannot
keep up sees fewer frames, never older ones. The output stage runs in the calling thread
because GUI toolkits want their window there. What the user changes during a session
(``Controls``) belongs to that thread; the inference stage reads one snapshot per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import ops, sinks
from .engine import Sharpener
from .errors import LivesharpError
from .io import camera_file, check_output
from .pipeline import END, Stages, published
from .settings import DEFAULT_MODEL
from .sources import capture_time, open_source

log = logging.getLogger("livesharp")


class LatestSlot:
    """A one-item queue that keeps only the newest item: a live source drops stale frames
    rather than queueing them (latency beats completeness). ``dropped`` counts the losses.

    ``END`` never replaces a waiting item: it comes out after it, so a file camera's last frame
    is not lost to its end.
    """

    def __init__(self):
        self._item = None
        self._ended = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item) -> None:
        with self._cond:
            if item is END:
                self._ended = True
            else:
                if self._item is not None:
                    self.dropped += 1
                self._item = item
            self._cond.notify()

    def get(self, timeout: float = 0.1):
        """The newest item, else END once it was put, else None when nothing came within ``timeout``."""
        with self._cond:
            if self._item is None and not self._ended:
                self._cond.wait(timeout)
            if self._item is not None:
                item, self._item = self._item, None
                return item
            return END if self._ended else None


@dataclass(frozen=True)
class Controls:
    """What the user changes during a live session: sharpening on/off, side by side, strength.

    Owned by the main thread, which replaces the whole object on a hotkey and never changes one
    in place; the inference thread takes one per frame, so on/off and strength always come from
    the same moment.
    """

    on: bool = True
    split: bool = False
    strength: float = 1.0

    def after_key(self, key: str | None) -> Controls:
        """The controls after a preview hotkey (+/- strength, space on/off, s split); other keys change nothing.

        >>> Controls(strength=1.95).after_key("+").strength, Controls().after_key(" ").on
        (2.0, False)
        """
        if key in ("+", "="):
            return replace(self, strength=min(2.0, round(self.strength + 0.1, 2)))
        if key == "-":
            return replace(self, strength=max(0.0, round(self.strength - 0.1, 2)))
        if key == " ":
            return replace(self, on=not self.on)
        if key == "s":
            return replace(self, split=not self.split)
        return self


@dataclass
class LiveResult:
    frames: int
    seconds: float
    dropped: int
    latency_ms: list

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lat = np.array(self.latency_ms) if self.latency_ms else np.zeros(1)
        return (f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} FPS), latency mean {lat.mean():.1f} ms "
                f"p95 {np.percentile(lat, 95):.1f} ms, dropped {self.dropped}")


@dataclass
class Sharpened:
    """One frame through the inference stage, with what the output stage reports about it."""

    before: np.ndarray
    after: np.ndarray
    t_capture: float  # time.monotonic() when the source captured it
    infer_ms: float


class Capture:
    """Stage 1, a thread: the source's frames into ``slot``, newest only.

    A file that ends ends the session; a camera that is lost is reopened until ``lost_timeout``
    seconds have passed, with ``lost`` set meanwhile (the output stage says so on screen).
    ``count`` and ``lost`` are written by this stage only.
    """

    def __init__(self, source, lost_timeout: float):
        self.source, self.lost_timeout = source, lost_timeout
        self.slot = LatestSlot()
        self.count = 0
        self.lost = False

    def __call__(self, stages: Stages) -> None:
        lost_at = None
        while not stages.stop.is_set():
            got = self.source.read()
            if got is not None:
                lost_at, self.lost = None, False
                self.count += 1
                self.slot.put(got)
                continue
            if not self.source.reopen():  # a file ended, or a camera is gone
                if not getattr(self.source, "is_camera", False):
                    self.slot.put(END)
                    return
                lost_at = lost_at or time.monotonic()
                self.lost = True
                if time.monotonic() - lost_at > self.lost_timeout:
                    raise LivesharpError(f"the camera was lost and did not come back within {self.lost_timeout:g} s; check the cable and run again")
                time.sleep(0.5)


class Infer:
    """Stage 2, a thread: sharpen the newest capture (batch 1, as soon as it is there) with the
    controls of that moment, read once per frame through ``controls()``."""

    def __init__(self, sharpener: Sharpener, captured: LatestSlot, sharpened: LatestSlot, controls: Callable[[], Controls]):
        self.sharpener, self.captured, self.sharpened, self.controls = sharpener, captured, sharpened, controls

    def __call__(self, stages: Stages) -> None:
        while (item := self.captured.get()) is not END:
            if item is None:
                if stages.stop.is_set():
                    return
                continue
            t0 = time.monotonic()
            c = self.controls()  # this frame's snapshot
            out = self.sharpener.sharpen(item.rgb, c.strength) if c.on else item.rgb
            self.sharpened.put(Sharpened(item.rgb, out, capture_time(item), (time.monotonic() - t0) * 1000))
        self.sharpened.put(END)


class Output:
    """Stage 3, in the calling thread: compose, draw the HUD, send to the virtual camera and the
    preview, write stats, apply hotkeys, pace. Owns ``controls``, replacing it on a hotkey.

    When nothing new was sharpened in time, the last frame goes out again: a video-call app
    that gets no frame for a while shows the camera as frozen or gone.
    """

    def __init__(self, capture: Capture, sharpened: LatestSlot, controls: Controls, *, name: str, virtual=None, preview=None,
                 stats=None, max_frames: int | None = None):
        self.capture, self.sharpened, self.controls, self.name = capture, sharpened, controls, name
        self.virtual, self.preview, self.stats, self.max_frames = virtual, preview, stats, max_frames
        self.frames, self.latencies = 0, []
        self.t_start = time.monotonic()

    @property
    def dropped(self) -> int:
        return self.capture.slot.dropped + self.sharpened.dropped

    def compose(self, s: Sharpened, c: Controls) -> np.ndarray:
        """The frame that goes out: the result, or input | result when split.

        The virtual camera has one fixed size, the capture's: split, each panel is shrunk to
        half of it and the pair fills it, rather than a frame twice as wide being built and
        squeezed back (twice the pixels composed, one more full-size resize per frame).
        """
        if not c.split:
            return s.after
        if self.virtual is None:
            return ops.side_by_side(s.before, s.after, ("input", self.name))
        h, w = s.after.shape[:2]
        half = ((w + 1) // 2, h)  # an odd width: the right panel loses its last column below
        panels = [cv2.resize(p, half, interpolation=cv2.INTER_AREA) for p in (s.before, s.after)]
        return ops.side_by_side(*panels, ("input", self.name))[:, :w]

    def hud(self, c: Controls, infer_ms: float) -> list[str]:
        elapsed = max(1e-6, time.monotonic() - self.t_start)
        latency = self.latencies[-1] if self.latencies else 0
        return [f"capture {self.capture.count / elapsed:.1f} fps  output {self.frames / elapsed:.1f} fps",
                f"inference {infer_ms:.1f} ms  latency {latency:.1f} ms",
                f"dropped {self.dropped}  strength {c.strength:.1f}  {self.name}{'' if c.on else ' (off)'}"]

    def __call__(self, stages: Stages) -> None:
        """Until the source ends, ``max_frames`` frames went out, the user quits or a stage failed."""
        last = None
        while self.max_frames is None or self.frames < self.max_frames:
            item = self.sharpened.get(timeout=0.05)
            if item is END or (item is None and stages.stop.is_set()):
                return
            if item is None and last is None:
                continue
            fresh = item is not None
            last = item if fresh else last
            c = self.controls
            frame = self.compose(last, c)
            if self.capture.lost:
                frame = ops.draw_hud(frame, ["camera lost: reconnecting..."])
            if self.virtual is not None:
                self.virtual.send(frame)
            if fresh:
                self.frames += 1
                latency = (time.monotonic() - last.t_capture) * 1000
                self.latencies.append(latency)
                if self.stats is not None:
                    self.stats.write({"frame": self.frames, "t": round(last.t_capture - self.t_start, 4), "latency_ms": round(latency, 2),
                                      "infer_ms": round(last.infer_ms, 2), "dropped": self.dropped})
            if self.preview is not None:
                key = self.preview.show(frame, self.hud(c, last.infer_ms))
                if key in ("q", "closed"):
                    return
                self.controls = c.after_key(key)
            if self.virtual is not None:
                self.virtual.sleep_until_next_frame()


def run_camera(
    source,
    *,
    sharpener: Sharpener,
    virtual=None,
    preview=None,
    side_by_side: bool = False,
    max_frames: int | None = None,
    stats=None,
    lost_timeout: float = 10.0,
) -> LiveResult:
    """The live stages on a source and sinks that are already open; ``run_live`` opens them.

    source: has ``read() -> io.Frame | None``, ``reopen() -> bool``, ``close()`` (see
    ``sources``), and is closed here once its thread has stopped. virtual: a
    ``sinks.VirtualCamera`` or anything with ``send`` and ``sleep_until_next_frame``; preview:
    a ``sinks.PreviewWindow``; stats: a ``sinks.StatsWriter``. Returns when the source ends,
    ``max_frames`` frames were output, the user quits, or Ctrl-C; a stage's failure is raised.
    """
    stages = Stages()
    capture, sharpened = Capture(source, lost_timeout), LatestSlot()
    output = Output(capture, sharpened, Controls(split=side_by_side, strength=sharpener.strength), name=sharpener.name,
                    virtual=virtual, preview=preview, stats=stats, max_frames=max_frames)
    # The inference stage reads the controls the output stage owns, one snapshot per frame.
    infer = Infer(sharpener, capture.slot, sharpened, lambda: output.controls)
    try:
        stages.start("capture", capture, stages)
        stages.start("infer", infer, stages)
        try:
            output(stages)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a live session ends: the other stages stop below
        except BaseException as e:
            stages.errors.append(e)  # raised by wait() below, after the threads have stopped
        stages.stop.set()
        stages.wait()
    finally:
        source.close()
    return LiveResult(output.frames, time.monotonic() - output.t_start, output.dropped, output.latencies)


def run_live(
    camera: str | int = 0,
    *,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30,
    loop: bool = False,
    virtual: bool = False,
    preview: bool | None = None,
    side_by_side: bool = False,
    model=DEFAULT_MODEL,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    strength: float = 1.0,
    max_frames: int | None = None,
    stats=None,
    overwrite: bool = False,
    status: Callable[[str], None] | None = None,
) -> LiveResult:
    """Sharpen a camera live into a virtual camera and/or a preview window, until it ends.

    Args:
        camera: a camera index, ``"/dev/videoN"``, or a video file played in real time as a
            stand-in webcam (``loop`` starts it over at the end).
        size, fps: what to ask the camera for (it may grant less; the status line says).
        virtual: publish to a virtual camera (needs ``livesharp[virtualcam]``). If none can be
            opened this is an error, unless ``preview=True``: then a warning, and preview only.
        preview: a window with HUD and hotkeys; None opens one when a display exists.
        side_by_side: start with input | result (the ``s`` hotkey toggles it).
        model, device, backend, precision, strength: as for ``Sharpener``.
        max_frames: stop after this many output frames. stats: a path for per-frame JSON lines,
            written like every output (never the camera's file, never over a file unless
            ``overwrite``) and published when the session ends.
        status: called with each status line: the first says what was opened, at which size
            and rate, and how long warming the model up at that size took.

    Ends on ``max_frames``, the end of a file, ``q`` in the preview or Ctrl-C (KeyboardInterrupt
    is a normal end here); bad input is a ``LivesharpError``.

    >>> run_live("clip.mp4", preview=False, model="unsharp", max_frames=30).fps  # doctest: +SKIP
    """
    say = status or (lambda line: None)
    if preview and not sinks.has_display():
        raise LivesharpError("--preview: no display here (DISPLAY/WAYLAND_DISPLAY unset); run with --no-preview")
    if stats is not None:
        check_output(camera_file(str(camera)), Path(stats), overwrite, None)
    with ExitStack() as opened:
        source = opened.enter_context(open_source(str(camera), size, fps, loop=loop))
        out_fps = fps if source.fps <= 0 else min(fps, source.fps)
        sharpener = opened.enter_context(Sharpener(model=model, device=device, backend=backend, precision=precision, strength=strength, live=True))
        # Before the first frame is taken: a slow first call would drop the frames behind it.
        warm = sharpener.warm_up(source.height, source.width)
        say(f"{source.describe()}; {sharpener.name} warmed up at {source.width}x{source.height} in {warm * 1000:.0f} ms")
        vcam = None
        if virtual:
            try:
                vcam = opened.enter_context(sinks.VirtualCamera(source.width, source.height, out_fps))
                say(f"virtual camera: {vcam.device} ({source.width}x{source.height}@{out_fps:g})")
            except LivesharpError as e:
                if not preview:
                    raise
                log.warning(f"{e}; continuing with the preview only")
        if preview is None:
            preview = sinks.has_display()
        window = opened.enter_context(sinks.PreviewWindow()) if preview else None
        # Written under a hidden name, renamed once the session has ended (after the writer closed).
        writer = opened.enter_context(sinks.StatsWriter(opened.enter_context(published(Path(stats), overwrite)))) if stats else None
        return run_camera(source, sharpener=sharpener, virtual=vcam, preview=window, side_by_side=side_by_side,
                          max_frames=max_frames, stats=writer)

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

On a CPU too slow for the network at the capture size, the inference stage runs it on a smaller
copy of the frame and adds what it changed, enlarged, to the full frame (``Sharpener.sharpen``'s
``scale``). ``ScaleGovernor`` picks that scale from timings taken at warm-up and while running:
the largest that fits the frame interval, lowered before frames would be dropped, raised again
when there is room. Video-call apps lower resolution before they drop frames; so does this.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import ops, sinks
from .engine import Sharpener, scaled_size
from .errors import LivesharpError
from .io import camera_file, check_output
from .pipeline import END, Stages, published, signals_handled
from .settings import DEFAULT_MODEL, SCALES, VIDEO_DETAIL_EVERY
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


def parse_scale(value) -> float | None:
    """``--scale``: ``"auto"`` -> None (the governor chooses), else one of ``SCALES``.

    >>> parse_scale("auto"), parse_scale("0.75"), parse_scale(1)
    (None, 0.75, 1.0)
    """
    if value is None or value == "auto":
        return None
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = -1.0
    if scale not in SCALES:
        raise LivesharpError(f"--scale {value}: use auto, {', '.join(f'{s:g}' for s in SCALES)}")
    return scale


class ScaleGovernor:
    """Which processing scale the inference stage uses, from what inference has been costing.

    ``observe(scale, ms)`` after each frame; ``scale`` is what the next frame uses. Each scale's
    cost is predicted as its cost at warm-up (``estimates``, ms per frame) times the machine's
    present ``load``: a moving average of how much slower than at warm-up frames are running
    now (so one slow frame is not a trend), whichever scale they ran at, since what slows one
    slows all. It keeps to the largest scale predicted to fit within ``share`` of the frame
    interval. The times are taken in the session, beside capture and output on the same cores,
    so their cost is in them already; the margin is for the frames slower than the average (on
    2 AVX2 cores, frames averaging 30 ms of a 33 ms interval had a p95 of 34 ms and 1 drop in
    300). A lower share, 0.8 (27 ms), would likely move the 2-core AVX-512 machine of
    benchmarks/README.md off scale 1, where ``cam`` ran 28-29 FPS at 31-36 ms (inferred from
    those figures, not measured there). It then:

    - lower, one step, as soon as the current scale's prediction exceeds that target (after
      ``settle`` frames at it): the target is below the interval, so this happens before
      frames queue up and are dropped;
    - raise, one step, when the larger scale is predicted to fit with ``raise_margin`` to
      spare and ``patience`` frames have passed at this one. Between the two thresholds it
      stays: the hysteresis that keeps a steady load at one scale.

    A raise undone within ``2 * patience`` frames means the warm-up misjudged that scale: its
    cost is corrected from the frames it took (and the load put back where it was), and the
    patience before the next raise doubles, so a raise that keeps failing is tried ever more
    rarely rather than oscillated on.

    ``fixed``: always this scale (``--scale 1``), whatever the times.

    >>> g = ScaleGovernor(33.3, {1.0: 50.0, 0.75: 25.0, 0.5: 14.0})  # 30 FPS: a target of 30 ms
    >>> g.scale
    0.75
    """

    def __init__(self, interval_ms: float, estimates: dict[float, float] | None = None, fixed: float | None = None, *,
                 share: float = 0.9, raise_margin: float = 0.85, alpha: float = 0.15, settle: int = 8, patience: int = 45):
        self.scales = sorted(estimates or {1.0: 0.0}, reverse=True) if fixed is None else [fixed]
        self.target = share * interval_ms
        self.base = {s: max(1e-3, ms) for s, ms in (estimates or {s: 0.0 for s in self.scales}).items()}
        self.load = 1.0
        self.fixed, self.raise_margin, self.alpha, self.settle = fixed, raise_margin, alpha, settle
        self.patience = self.base_patience = patience
        self.frames_here, self.ms_here = 0, 0.0  # frames observed at the current scale, and their sum
        self.raised: tuple[int, float] | None = None  # (frames since, load before) a recent raise
        self.changes = 0
        self.scale = fixed if fixed is not None else next((s for s in self.scales if self.base[s] <= self.target), self.scales[-1])

    @property
    def estimates(self) -> dict[float, float]:
        """Each scale's predicted milliseconds per frame now."""
        return {s: self.load * self.base[s] for s in self.scales}

    def observe(self, scale: float, ms: float) -> float:
        """Take one frame's inference time at ``scale``; return the scale for the next frame."""
        if self.fixed is not None or scale != self.scale:  # a frame begun before the last change
            return self.scale
        self.load += self.alpha * (ms / self.base[scale] - self.load)
        self.frames_here, self.ms_here = self.frames_here + 1, self.ms_here + ms
        if self.raised is not None:
            self.raised = (self.raised[0] + 1, self.raised[1]) if self.raised[0] < 2 * self.base_patience else None
        i, predicted = self.scales.index(scale), self.estimates
        if predicted[scale] > self.target and i + 1 < len(self.scales) and self.frames_here >= self.settle:
            if self.raised is not None:  # a raise that did not hold: this scale costs more than warm-up said
                load_before = self.raised[1]
                self.base[scale] = max(self.base[scale], self.ms_here / self.frames_here / load_before)
                self.load, self.raised = load_before, None
                self.patience = min(32 * self.base_patience, 2 * self.patience)
            self._move(self.scales[i + 1])
        elif i > 0 and self.frames_here >= self.patience and predicted[self.scales[i - 1]] <= self.raise_margin * self.target:
            self.raised = (0, self.load)
            self._move(self.scales[i - 1])
        return self.scale

    def _move(self, scale: float) -> None:
        self.scale, self.frames_here, self.ms_here, self.changes = scale, 0, 0.0, self.changes + 1

    def describe(self) -> str:
        """The predicted times and the target, for the status line."""
        est = ", ".join(f"{s:g}: {ms:.0f} ms" for s, ms in self.estimates.items())
        return f"{est}; target {self.target:.0f} ms per frame"


def calibrate(sharpener: Sharpener, height: int, width: int, scales=SCALES, runs: int = 3) -> dict[float, float]:
    """Median milliseconds per frame of ``sharpener`` at each scale, in turns, after one
    untimed frame each (which compiles that size), with the detail stage's share. For
    ``ScaleGovernor``'s first estimates."""
    for s in scales:
        sharpener.warm_up(height, width, runs=1, scale=s)
    frame = np.zeros((height, width, 3), np.uint8)
    times: dict[float, list[float]] = {s: [] for s in scales}
    with sharpener.timing():  # the detail stage's time counts, though the frame is blank
        for _ in range(runs):
            for s in scales:
                t0 = time.perf_counter()
                sharpener.sharpen(frame, 1.0, s)
                times[s].append(1000 * (time.perf_counter() - t0))
    reading = sharpener.reading_ms(height, width, runs)
    return {s: float(np.median(t)) + reading for s, t in times.items()}


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
    scales: list = field(default_factory=list)  # the processing scale of each output frame

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lat = np.array(self.latency_ms) if self.latency_ms else np.zeros(1)
        line = (f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} FPS), latency mean {lat.mean():.1f} ms "
                f"p95 {np.percentile(lat, 95):.1f} ms, dropped {self.dropped}")
        if self.scales and set(self.scales) != {1.0}:
            counts = {s: self.scales.count(s) for s in sorted(set(self.scales), reverse=True)}
            line += ", scale " + ", ".join(f"{s:g} ({n} frames)" for s, n in counts.items())
        return line


@dataclass
class Sharpened:
    """One frame through the inference stage, with what the output stage reports about it."""

    before: np.ndarray
    after: np.ndarray
    t_capture: float  # time.monotonic() when the source captured it
    infer_ms: float
    scale: float = 1.0  # the processing scale it was computed at


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
    controls of that moment, read once per frame through ``controls()``, at the scale the
    ``governor`` says, which it then tells how long the frame took."""

    def __init__(self, sharpener: Sharpener, captured: LatestSlot, sharpened: LatestSlot, controls: Callable[[], Controls],
                 governor: ScaleGovernor | None = None):
        self.sharpener, self.captured, self.sharpened, self.controls = sharpener, captured, sharpened, controls
        self.governor = governor or ScaleGovernor(1000.0, fixed=1.0)

    def __call__(self, stages: Stages) -> None:
        while (item := self.captured.get()) is not END:
            if item is None:
                if stages.stop.is_set():
                    return
                continue
            t0 = time.monotonic()
            c = self.controls()  # this frame's snapshot
            scale = self.governor.scale
            if not c.on:
                out = item.rgb
            elif scale == 1.0:  # the full-resolution path, called exactly as before scales existed
                out = self.sharpener.sharpen(item.rgb, c.strength)
            else:
                out = self.sharpener.sharpen(item.rgb, c.strength, scale)
            ms = (time.monotonic() - t0) * 1000
            if c.on:
                self.governor.observe(scale, ms)
            self.sharpened.put(Sharpened(item.rgb, out, capture_time(item), ms, scale))
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
        self.frames, self.latencies, self.scales = 0, [], []
        self.precision = "none"  # the arithmetic the frames were computed in, for --stats
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

    def hud(self, c: Controls, infer_ms: float, scale: float = 1.0) -> list[str]:
        elapsed = max(1e-6, time.monotonic() - self.t_start)
        latency = self.latencies[-1] if self.latencies else 0
        return [f"capture {self.capture.count / elapsed:.1f} fps  output {self.frames / elapsed:.1f} fps",
                f"inference {infer_ms:.1f} ms at scale {scale:g}  latency {latency:.1f} ms",
                f"dropped {self.dropped}  strength {c.strength:.1f}  {self.name}{'' if c.on else ' (off)'}"]

    def __call__(self, stages: Stages) -> None:
        """Until the source ends, ``max_frames`` frames went out, the user quits or a stage failed."""
        last = None
        while self.max_frames is None or self.frames < self.max_frames:
            item = self.sharpened.get(timeout=0.05)
            if item is END or stages.stop.is_set():  # the stop: Ctrl-C, a signal, or a stage that failed
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
                self.scales.append(last.scale)
                if self.stats is not None:
                    self.stats.write({"frame": self.frames, "t": round(last.t_capture - self.t_start, 4), "latency_ms": round(latency, 2),
                                      "infer_ms": round(last.infer_ms, 2), "scale": last.scale, "precision": self.precision,
                                      "dropped": self.dropped})
            if self.preview is not None:
                key = self.preview.show(frame, self.hud(c, last.infer_ms, last.scale))
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
    governor: ScaleGovernor | None = None,
) -> LiveResult:
    """The live stages on a source and sinks that are already open; ``run_live`` opens them.

    source: has ``read() -> io.Frame | None``, ``reopen() -> bool``, ``close()`` (see
    ``sources``), and is closed here once its thread has stopped. virtual: a
    ``sinks.VirtualCamera`` or anything with ``send`` and ``sleep_until_next_frame``; preview:
    a ``sinks.PreviewWindow``; stats: a ``sinks.StatsWriter``; governor: a ``ScaleGovernor``
    (None: scale 1 throughout). Returns when the source ends,
    ``max_frames`` frames were output, the user quits, or Ctrl-C; a stage's failure is raised.
    """
    stages = Stages()
    capture, sharpened = Capture(source, lost_timeout), LatestSlot()
    output = Output(capture, sharpened, Controls(split=side_by_side, strength=sharpener.strength), name=sharpener.name,
                    virtual=virtual, preview=preview, stats=stats, max_frames=max_frames)
    output.precision = sharpener.precision  # chosen by now: run_live warmed the model up at this size
    # The inference stage reads the controls the output stage owns, one snapshot per frame.
    infer = Infer(sharpener, capture.slot, sharpened, lambda: output.controls, governor)
    # Ctrl-C, SIGTERM and SIGHUP end a session between two frames: raised as KeyboardInterrupt,
    # they could land inside a lock's `with` (a slot the other stages then wait on for ever) or
    # halfway through a frame sent to the virtual camera or a --stats row.
    stop_between_frames = signals_handled(("SIGINT", "SIGTERM", "SIGHUP"), lambda signum, frame: stages.stop.set())
    try:
        stages.start("capture", capture, stages)
        stages.start("infer", infer, stages)
        try:
            with stop_between_frames:
                output(stages)
        except KeyboardInterrupt:
            pass  # off the main thread, Ctrl-C still arrives this way: the other stages stop below
        except BaseException as e:
            stages.errors.append(e)  # raised by wait() below, after the threads have stopped
        stages.stop.set()
        stages.wait()
    finally:
        source.close()
    return LiveResult(output.frames, time.monotonic() - output.t_start, output.dropped, output.latencies, output.scales)


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
    detail: bool = True,
    max_frames: int | None = None,
    stats=None,
    overwrite: bool = False,
    status: Callable[[str], None] | None = None,
    scale: str | float = "auto",
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
        model, device, backend, precision, strength, detail: as for ``Sharpener``.
        scale: ``"auto"`` (``ScaleGovernor`` chooses among ``SCALES`` and adapts while running),
            or a fixed 1, 0.75 or 0.5: the network runs on the frame shrunk by it.
        max_frames: stop after this many output frames. stats: a path for per-frame JSON lines,
            written like every output (never the camera's file, never over a file unless
            ``overwrite``) and published when the session ends.
        status: called with each status line: the first says what was opened, at which size
            and rate, and how long warming the model up at that size took; the second the
            precision and the processing scale, with the times they were chosen by.

    Ends on ``max_frames``, the end of a file, ``q`` in the preview or Ctrl-C (KeyboardInterrupt
    is a normal end here); bad input is a ``LivesharpError``.

    >>> run_live("clip.mp4", preview=False, model="unsharp", max_frames=30).fps  # doctest: +SKIP
    """
    say = status or (lambda line: None)
    fixed = parse_scale(scale)
    if preview and not sinks.has_display():
        raise LivesharpError("--preview: no display here (DISPLAY/WAYLAND_DISPLAY unset); run with --no-preview")
    if stats is not None:
        check_output(camera_file(str(camera)), Path(stats), overwrite, None)
    with ExitStack() as opened:
        source = opened.enter_context(open_source(str(camera), size, fps, loop=loop))
        out_fps = fps if source.fps <= 0 else min(fps, source.fps)
        sharpener = opened.enter_context(Sharpener(model=model, device=device, backend=backend, precision=precision, strength=strength, live=True,
                                                   detail=detail, detail_every=VIDEO_DETAIL_EVERY))
        # Before the first frame is taken: a slow first call would drop the frames behind it.
        warm = sharpener.warm_up(source.height, source.width, scale=fixed or 1.0)
        say(f"{source.describe()}; {sharpener.name} warmed up at {source.width}x{source.height} in {warm * 1000:.0f} ms")
        governor = _governor(sharpener, source.height, source.width, out_fps, fixed)
        say(_describe_choice(sharpener, governor, source.height, source.width))
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
                          max_frames=max_frames, stats=writer, governor=governor)


def _governor(sharpener: Sharpener, height: int, width: int, fps: float, fixed: float | None) -> ScaleGovernor:
    """A fixed scale as asked; for auto, the scales timed at this size (each compiled here, so
    a later change of scale does not stall a frame on a compilation)."""
    if fixed is not None:
        return ScaleGovernor(1000 / fps, fixed=fixed)
    return ScaleGovernor(1000 / fps, calibrate(sharpener, height, width))


def _describe_choice(sharpener: Sharpener, governor: ScaleGovernor, height: int, width: int) -> str:
    measured = sharpener.measured
    precision = measured.describe() if measured is not None else sharpener.precision
    h, w = scaled_size(height, width, governor.scale)
    detail = "; detail stage on (--no-detail: off)" if sharpener.stage is not None else ""
    if governor.fixed is not None:
        return f"precision {precision}; scale {governor.scale:g} ({w}x{h}){detail}"
    return f"precision {precision}; scale auto: {governor.scale:g} ({w}x{h}; {governor.describe()}){detail}"

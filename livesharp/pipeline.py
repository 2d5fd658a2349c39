"""Stages as threads joined by bounded queues.

A file never drops a frame: every queue blocks when full (completeness beats latency). The
inference stage batches opportunistically: it takes whatever frames are already decoded, up to
``batch``, and never waits to fill a batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from . import ops
from .engine import DEFAULT_MODEL, Sharpener
from .errors import LivesharpError
from .files import OutputAppeared, atomic_output
from .io import OUTPUT_FORMATS, Frame, VideoReader, VideoWriter, check_input, check_output

log = logging.getLogger("livesharp")

END = object()  # end-of-stream marker that travels through the queues


class _Stopped(Exception):
    """Another stage failed or the user pressed Ctrl-C: unwind this one quietly."""


@dataclass
class FileResult:
    output: Path
    frames: int
    seconds: float
    width: int
    height: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Stages:
    """Runs stage functions in threads; the first failure stops them all and is re-raised."""

    def __init__(self):
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def put(self, q: queue.Queue, item) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                pass
        raise _Stopped

    def get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        raise _Stopped

    def start(self, name: str, fn, *args) -> None:
        def run():
            try:
                fn(*args)
            except _Stopped:
                pass
            except BaseException as e:  # reported by wait(); the other stages are told to stop
                self.errors.append(e)
                self.stop.set()

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def wait(self) -> None:
        """Join every stage; Ctrl-C stops them all before it propagates."""
        try:
            for t in self.threads:
                while t.is_alive():
                    t.join(0.1)
        except KeyboardInterrupt:
            self.stop.set()
            for t in self.threads:
                t.join(5)
            raise
        if self.errors:
            raise self.errors[0]


@contextmanager
def _published(dst: Path, overwrite: bool):
    """``atomic_output`` for a user's output: without --overwrite, a file that appeared under
    the name while we worked (another program, a second run) is never replaced."""
    try:
        with atomic_output(dst, replace=overwrite) as tmp:
            yield tmp
    except OutputAppeared as e:
        raise LivesharpError(
            f"{dst}: appeared while livesharp was writing and was not replaced; the result is in {e.kept} "
            f"(pass --overwrite to replace it)"
        ) from None


def compose(before: np.ndarray, after: np.ndarray, side_by_side: bool, rotation: int, label: str) -> np.ndarray:
    """The frame that gets written: the result, or input | result upright when side by side."""
    if side_by_side:
        # The display matrix cannot rotate two panels in place, so turn them upright first.
        return ops.side_by_side(ops.rotate(before, rotation), ops.rotate(after, rotation), ("input", label))
    return after


def process_file(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | Path = DEFAULT_MODEL,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    strength: float = 1.0,
    side_by_side: bool = False,
    batch: int = 4,
    overwrite: bool = False,
    crf: int = 18,
    preset: str = "medium",
    progress: bool | None = None,
    sharpener: Sharpener | None = None,
) -> FileResult:
    """Sharpen every frame of a video file, keeping its timing, rotation and audio.

    Args:
        src: input video; never modified.
        dst: output (.mp4, .mov, .mkv), written to a temporary file and renamed when complete.
        side_by_side: write input | sharpened, twice as wide.
        batch: most frames per inference call.
        progress: a progress bar; None shows it only on a terminal.
        backend, precision: the inference runtime and its arithmetic; see ``Sharpener``.
        sharpener: an already-open Sharpener (then model/device/backend/strength are ignored).

    >>> process_file("talk.mp4", "talk_sharp.mp4", model="unsharp")  # doctest: +SKIP
    """
    src, dst = Path(src), Path(dst)
    if batch < 1:
        raise LivesharpError(f"--batch {batch}: must be 1 or more")
    check_input(src)
    check_output(src, dst, overwrite, OUTPUT_FORMATS)
    reader = VideoReader(src)  # a bad input is reported before the model loads
    own = sharpener is None
    try:
        sharpener = sharpener or Sharpener(model=model, device=device, strength=strength, backend=backend, precision=precision)
    except BaseException:
        reader.close()
        raise
    info = reader.info
    stages = Stages()
    decoded: queue.Queue = queue.Queue(maxsize=2 * batch + 2)
    encoded: queue.Queue = queue.Queue(maxsize=2 * batch + 2)
    audio: deque = deque()  # packets are small and the video queues bound how far audio runs ahead
    bar = tqdm(total=info.frames or None, unit="frame", desc=src.name, disable=None if progress is None else not progress, dynamic_ncols=True)
    written = 0
    size = [0, 0]

    def decode():
        for frame in reader.frames(on_audio=audio.append):
            stages.put(decoded, frame)
        stages.put(decoded, END)

    def infer():
        done = False
        while not done:
            frames = [stages.get(decoded)]
            if frames[0] is END:
                break
            while len(frames) < batch:  # take what is ready; never wait to fill a batch
                try:
                    f = decoded.get_nowait()
                except queue.Empty:
                    break
                if f is END:
                    done = True
                    break
                frames.append(f)
            results = sharpener.sharpen_batch([f.rgb for f in frames])
            for f, out in zip(frames, results):
                rgb = compose(f.rgb, out, side_by_side, reader.rotation, sharpener.name)
                stages.put(encoded, Frame(rgb, f.pts, f.duration))
        stages.put(encoded, END)

    def encode():
        nonlocal written, writer
        while (f := stages.get(encoded)) is not END:
            rgb = ops.pad_to_even(f.rgb)
            if written == 0:
                # Opened here: the rotation is known once the reader has decoded a frame.
                writer = VideoWriter(tmp, info, crf=crf, preset=preset, matrix=None if side_by_side else reader.matrix)
                size[:] = rgb.shape[1], rgb.shape[0]
                if rgb.shape != f.rgb.shape:
                    h, w = f.rgb.shape[:2]
                    log.warning(f"{w}x{h} has an odd side and H.264 yuv420p needs even ones: writing {size[0]}x{size[1]} (last row/column repeated)")
            writer.write(rgb, f.pts, f.duration)
            written += 1
            bar.update(1)
            while audio:
                writer.write_audio(audio.popleft())
        while audio:
            writer.write_audio(audio.popleft())
        writer.close()

    t0 = time.perf_counter()
    writer = None
    try:
        with _published(dst, overwrite) as tmp:
            stages.start("decode", decode)
            stages.start("infer", infer)
            stages.start("encode", encode)
            try:
                stages.wait()
            except BaseException:
                if writer is not None:
                    writer.abort()  # before atomic_output removes its file
                raise
    finally:
        bar.close()
        reader.close()
        if own:
            sharpener.close()
    return FileResult(dst, written, time.perf_counter() - t0, size[0], size[1])


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def process_image(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | Path = DEFAULT_MODEL,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    strength: float = 1.0,
    side_by_side: bool = False,
    overwrite: bool = False,
    sharpener: Sharpener | None = None,
) -> Path:
    """Sharpen one still image (PNG, JPEG, ...); the output type follows ``dst``'s suffix."""
    src, dst = Path(src), Path(dst)
    check_input(src)
    check_output(src, dst, overwrite, IMAGE_SUFFIXES)
    bgr = cv2.imread(str(src), cv2.IMREAD_COLOR)  # applies EXIF orientation, drops alpha
    if bgr is None:
        raise LivesharpError(f"{src}: not an image OpenCV can read; pass a PNG or JPEG file")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    own = sharpener is None
    sharpener = sharpener or Sharpener(model=model, device=device, strength=strength, backend=backend, precision=precision)
    try:
        out = sharpener.sharpen(rgb)
    finally:
        if own:
            sharpener.close()
    if side_by_side:
        out = ops.side_by_side(rgb, out, ("input", sharpener.name))
    with _published(dst, overwrite) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
            raise LivesharpError(f"{dst}: could not write the image; check the folder and free space")
    return dst


# --- live: the same stages, with the live policy ------------------------------------------


class LatestSlot:
    """A one-item queue that keeps only the newest item: a live source drops stale frames
    rather than queueing them (latency beats completeness). ``dropped`` counts the losses."""

    def __init__(self):
        self._item = None
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None and self._item is not END:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def get(self, timeout: float = 0.1):
        """The newest item, or None when nothing new arrived within ``timeout``."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


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
    """Capture → sharpen (batch 1, as soon as a frame is ready) → virtual camera / preview.

    source: has ``read() -> (rgb, t_capture) | None``, ``reopen() -> bool``, ``fps``, ``close()``
    (see ``sources``). virtual: a ``sinks.VirtualCamera`` or anything with ``send`` and
    ``sleep_until_next_frame``; preview: a ``sinks.PreviewWindow``; stats: a ``sinks.StatsWriter``.
    Capture and inference run in threads; the output loop runs here, in the calling (main)
    thread, because GUI toolkits want their window there. Returns when the source ends,
    ``max_frames`` frames were output, the user quits, or Ctrl-C.
    """
    stages = Stages()
    captured, processed = LatestSlot(), LatestSlot()
    state = {"lost": False, "captured": 0, "infer_ms": 0.0}
    controls = Controls(split=side_by_side, strength=sharpener.strength)
    t_start = time.monotonic()

    def capture():
        lost_at = None
        while not stages.stop.is_set():
            got = source.read()
            if got is not None:
                lost_at, state["lost"] = None, False
                state["captured"] += 1
                captured.put(got)
                continue
            if not source.reopen():  # a file ended, or a camera is gone
                if not getattr(source, "is_camera", False):
                    captured.put(END)
                    return
                lost_at = lost_at or time.monotonic()
                state["lost"] = True
                if time.monotonic() - lost_at > lost_timeout:
                    raise LivesharpError(f"the camera was lost and did not come back within {lost_timeout:g} s; check the cable and run again")
                time.sleep(0.5)

    def infer():
        while (item := captured.get()) is not END:
            if item is None:
                if stages.stop.is_set():
                    return
                continue
            rgb, t_cap = item
            t0 = time.monotonic()
            c = controls  # this frame's snapshot
            out = sharpener.sharpen(rgb, c.strength) if c.on else rgb
            state["infer_ms"] = (time.monotonic() - t0) * 1000
            processed.put((rgb, out, t_cap))
        processed.put(END)

    stages.start("capture", capture)
    stages.start("infer", infer)
    frames, latencies, last = 0, [], None
    try:
        while max_frames is None or frames < max_frames:
            item = processed.get(timeout=0.05)
            if item is END or (stages.errors and item is None):
                break
            if item is None and last is None:
                continue
            fresh = item is not None
            before, after, t_cap = item if fresh else last
            last = (before, after, t_cap)
            c = controls
            frame = compose(before, after, True, 0, sharpener.name) if c.split else after
            if state["lost"]:
                frame = ops.draw_hud(frame, ["camera lost: reconnecting..."])
            if virtual is not None:
                if c.split:  # the virtual camera has one fixed size: squeeze the pair into it
                    frame = cv2.resize(frame, (after.shape[1], after.shape[0]), interpolation=cv2.INTER_AREA)
                virtual.send(frame)
            if fresh:
                frames += 1
                latency = (time.monotonic() - t_cap) * 1000
                latencies.append(latency)
                dropped = captured.dropped + processed.dropped
                if stats is not None:
                    stats.write({"frame": frames, "t": round(t_cap - t_start, 4), "latency_ms": round(latency, 2),
                                 "infer_ms": round(state["infer_ms"], 2), "dropped": dropped})
            if preview is not None:
                elapsed = max(1e-6, time.monotonic() - t_start)
                hud = [f"capture {state['captured'] / elapsed:.1f} fps  output {frames / elapsed:.1f} fps",
                       f"inference {state['infer_ms']:.1f} ms  latency {latencies[-1] if latencies else 0:.1f} ms",
                       f"dropped {captured.dropped + processed.dropped}  strength {c.strength:.1f}  {sharpener.name}{'' if c.on else ' (off)'}"]
                key = preview.show(frame, hud)
                if key in ("q", "closed"):
                    break
                controls = controls.after_key(key)
            if virtual is not None:
                virtual.sleep_until_next_frame()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a live session ends: stop cleanly below
    finally:
        stages.stop.set()
        for t in stages.threads:
            t.join(5)
        source.close()
    if stages.errors:
        raise stages.errors[0]
    return LiveResult(frames, time.monotonic() - t_start, captured.dropped + processed.dropped, latencies)

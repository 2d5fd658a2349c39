"""``livesharp demo``: the file pipeline (``process_file``) on a short real clip shipped in the
package, scored frame by frame.

The clip is GoPro footage blurred by the GoPro recipe, with its sharp frames alongside, so the
demo can say how much sharper the result is, not just show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .engine import Sharpener
from .files import atomic_output
from .io import Frame, VideoReader
from .live import calibrate
from .ops import psnr
from .pipeline import process_file
from .settings import DEFAULT_MODEL, VIDEO_DETAIL_EVERY

CAMERA_FPS = (30, 24)  # the camera rates a verdict is given against, the common one first

DATA = Path(__file__).resolve().parent / "data"


@dataclass
class DemoResult:
    video: Path
    image: Path
    frames: int
    ms: dict[float, float]  # milliseconds a frame at each of cam's scales, the network and its detail stage alone on the machine
    psnr_input: float
    psnr_output: float
    width: int = 0  # the clip's frame size, at which ms was measured
    height: int = 0

    @property
    def fps(self) -> float:
        """Frames per second at full size, one frame at a time, as a camera feeds them."""
        return 1000 / self.ms[1.0]

    @property
    def verdict(self) -> str:
        return realtime_verdict(self.ms, self.width, self.height)


def realtime_verdict(ms: dict[float, float], width: int, height: int) -> str:
    """What the milliseconds a frame measured at each scale (``live.calibrate``) at width x
    height mean for a live camera, in one line.

    >>> realtime_verdict({1.0: 24.0, 0.75: 15.0}, 1280, 720)
    'this machine sharpens 1280x720 at 42 FPS: keeps up with a 30 FPS camera at that size'
    >>> realtime_verdict({1.0: 38.0, 0.75: 22.0}, 1280, 720)
    'this machine sharpens 1280x720 at 26 FPS: keeps up with a 24 FPS camera at that size, not 30 FPS; livesharp cam --scale auto keeps 30 FPS (about 45 FPS at --scale 0.75)'
    >>> realtime_verdict({1.0: 120.0, 0.75: 70.0, 0.5: 36.0, 0.375: 25.0}, 1280, 720)
    'this machine sharpens 1280x720 at 8.3 FPS: cannot keep up with a 30 FPS camera at that size; use livesharp cam --scale auto (about 40 FPS at --scale 0.375)'
    >>> realtime_verdict({1.0: 450.0, 0.375: 70.0}, 1280, 720)
    'this machine sharpens 1280x720 at 2.2 FPS: cannot keep up with a 30 FPS camera at that size; use livesharp cam --scale auto and a smaller camera size, --size 640x480 (even --scale 0.375 makes about 14 FPS)'
    """
    fps = {s: 1000 / t for s, t in ms.items()}
    head = f"this machine sharpens {width}x{height} at {fps[1.0]:.2g} FPS" if fps[1.0] < 10 else f"this machine sharpens {width}x{height} at {fps[1.0]:.0f} FPS"
    fast, slow = CAMERA_FPS
    if fps[1.0] >= fast:
        return f"{head}: keeps up with a {fast} FPS camera at that size"
    smaller = sorted((s for s in fps if s < 1), reverse=True)
    fits = [f"about {fps[s]:.0f} FPS at --scale {s:g}" for s in smaller if fps[s] >= fast][:1]
    hint = f" ({fits[0]})" if fits else f" and a smaller camera size, --size 640x480 (even --scale {smaller[-1]:g} makes about {fps[smaller[-1]]:.0f} FPS)"
    if fps[1.0] >= slow:
        return f"{head}: keeps up with a {slow} FPS camera at that size, not {fast} FPS; livesharp cam --scale auto keeps {fast} FPS{hint}"
    return f"{head}: cannot keep up with a {fast} FPS camera at that size; use livesharp cam --scale auto{hint}"


def run_demo(out_dir: str | Path, model: str = DEFAULT_MODEL, device: str = "auto", preview=None, frames: int | None = None,
             backend: str = "auto", precision: str = "auto", status: Callable[[str], None] | None = None,
             progress: Callable[[int, int], None] | None = None) -> DemoResult:
    """Sharpen the shipped clip (its first ``frames`` frames, or all) with ``process_file``; write a
    side-by-side video and a before/after PNG (the middle frame) into ``out_dir``, and score input
    and output against the clip's sharp frames. ``preview`` (a ``sinks.PreviewWindow`` or None)
    shows each pair with its scores until the user closes it or presses q.

    ``status(line)`` hears each step as it starts (loading, compiling); ``progress(i, n)`` each
    frame written. Before the clip runs, the model is compiled for its size and timed alone at
    each of ``cam``'s scales, as ``cam`` times it (``live.calibrate``): the clip's own run shares
    the cores with decoding and encoding, which a camera does not.
    """
    say = status or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video, image = out_dir / "livesharp_demo.mp4", out_dir / "livesharp_demo.png"
    scores_in: list[float] = []
    scores_out: list[float] = []
    pairs: dict[str, np.ndarray] = {}
    sharp = VideoReader(DATA / "demo_sharp.mp4")
    total = min(frames or sharp.info.frames, sharp.info.frames)
    width, height = sharp.info.width, sharp.info.height
    middle = total // 2

    def score(frame: Frame, out: np.ndarray, pair: np.ndarray) -> None:
        nonlocal preview
        truth = next(truths).rgb  # the two clips are frame for frame the same footage
        scores_in.append(psnr(frame.rgb, truth))
        scores_out.append(psnr(out, truth))
        pairs["last"] = pair
        if len(scores_in) - 1 == middle:
            pairs["middle"] = pair
        if progress is not None:
            progress(len(scores_in), total)
        if preview is not None:
            hud = [f"frame {len(scores_in)}", f"PSNR {scores_in[-1]:.2f} -> {scores_out[-1]:.2f} dB"]
            if preview.show(pair, hud) in ("q", "closed"):
                preview = None  # stop showing; the run and its outputs go on

    try:
        say(f"loading the {model} model")
        t = time.perf_counter()
        with Sharpener(model=model, device=device, backend=backend, precision=precision, detail_every=VIDEO_DETAIL_EVERY) as sharpener:
            say(f"compiling it for {width}x{height} on this machine ({sharpener.backend}; the first run at a size takes longest)")
            ms = calibrate(sharpener, height, width)
            say(f"ready in {time.perf_counter() - t:.1f} s: sharpening {total} frames of {DATA.joinpath('demo_blurry.mp4').name}")
            truths = sharp.frames()
            r = process_file(DATA / "demo_blurry.mp4", video, sharpener=sharpener, batch=1, side_by_side=True, overwrite=True,
                             crf=20, preset="veryfast", progress=False, max_frames=frames, on_frame=score)
    finally:
        sharp.close()
    with atomic_output(image) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(pairs.get("middle", pairs["last"]), cv2.COLOR_RGB2BGR))
    return DemoResult(video, image, r.frames, ms, float(np.mean(scores_in)), float(np.mean(scores_out)), width, height)

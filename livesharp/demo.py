"""``livesharp demo``: the file pipeline (``process_file``) on a short real clip shipped in the
package, scored frame by frame.

The clip is GoPro footage blurred by the GoPro recipe, with its sharp frames alongside, so the
demo can say how much sharper the result is, not just show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .files import atomic_output
from .io import Frame, VideoReader
from .ops import psnr
from .pipeline import process_file
from .settings import DEFAULT_MODEL

DATA = Path(__file__).resolve().parent / "data"


@dataclass
class DemoResult:
    video: Path
    image: Path
    frames: int
    fps: float  # model only: frames per second inside the network, not decode or encode
    psnr_input: float
    psnr_output: float


def run_demo(out_dir: str | Path, model: str = DEFAULT_MODEL, device: str = "auto", preview=None, frames: int | None = None,
             backend: str = "auto", precision: str = "auto") -> DemoResult:
    """Sharpen the shipped clip (its first ``frames`` frames, or all) with ``process_file``; write a
    side-by-side video and a before/after PNG (the middle frame) into ``out_dir``, and score input
    and output against the clip's sharp frames. ``preview`` (a ``sinks.PreviewWindow`` or None)
    shows each pair with its scores until the user closes it or presses q."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video, image = out_dir / "livesharp_demo.mp4", out_dir / "livesharp_demo.png"
    scores_in: list[float] = []
    scores_out: list[float] = []
    pairs: dict[str, np.ndarray] = {}
    sharp = VideoReader(DATA / "demo_sharp.mp4")
    middle = (frames or sharp.info.frames) // 2

    def score(frame: Frame, out: np.ndarray, pair: np.ndarray) -> None:
        nonlocal preview
        truth = next(truths).rgb  # the two clips are frame for frame the same footage
        scores_in.append(psnr(frame.rgb, truth))
        scores_out.append(psnr(out, truth))
        pairs["last"] = pair
        if len(scores_in) - 1 == middle:
            pairs["middle"] = pair
        if preview is not None:
            hud = [f"frame {len(scores_in)}", f"PSNR {scores_in[-1]:.2f} -> {scores_out[-1]:.2f} dB"]
            if preview.show(pair, hud) in ("q", "closed"):
                preview = None  # stop showing; the run and its outputs go on

    try:
        truths = sharp.frames()
        r = process_file(DATA / "demo_blurry.mp4", video, model=model, device=device, backend=backend, precision=precision,
                         side_by_side=True, overwrite=True, crf=20, preset="veryfast", progress=False, max_frames=frames,
                         on_frame=score)
    finally:
        sharp.close()
    with atomic_output(image) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(pairs.get("middle", pairs["last"]), cv2.COLOR_RGB2BGR))
    fps = r.frames / r.model_seconds if r.model_seconds else 0.0
    return DemoResult(video, image, r.frames, fps, float(np.mean(scores_in)), float(np.mean(scores_out)))

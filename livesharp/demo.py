"""``livesharp demo``: the real pipeline on a short real clip shipped in the package.

The clip is GoPro footage blurred by the GoPro recipe, with its sharp frames alongside, so the
demo can say how much sharper the result is, not just show it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import ops
from .engine import DEFAULT_MODEL, Sharpener
from .files import atomic_output
from .io import VideoReader, VideoWriter

DATA = Path(__file__).resolve().parent / "data"


@dataclass
class DemoResult:
    video: Path
    image: Path
    frames: int
    fps: float
    psnr_input: float
    psnr_output: float


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def run_demo(out_dir: str | Path, model: str = DEFAULT_MODEL, device: str = "auto", preview=None, frames: int | None = None,
             backend: str = "auto", precision: str = "auto") -> DemoResult:
    """Sharpen the shipped clip (its first ``frames`` frames, or all); write a side-by-side video and
    a before/after PNG into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blurry, sharp = VideoReader(DATA / "demo_blurry.mp4"), VideoReader(DATA / "demo_sharp.mp4")
    video, image = out_dir / "livesharp_demo.mp4", out_dir / "livesharp_demo.png"
    scores_in, scores_out, n, seconds = [], [], 0, 0.0
    middle = None
    try:
        with atomic_output(video) as tmp, Sharpener(model=model, device=device, backend=backend, precision=precision) as s:
            writer = VideoWriter(tmp, blurry.info, crf=20, preset="veryfast")
            for b, t in zip(blurry.frames(), sharp.frames()):
                if frames is not None and n >= frames:
                    break
                t0 = time.perf_counter()
                out = s.sharpen(b.rgb)
                seconds += time.perf_counter() - t0
                scores_in.append(psnr(b.rgb, t.rgb))
                scores_out.append(psnr(out, t.rgb))
                pair = ops.side_by_side(b.rgb, out, ("input", s.name))
                writer.write(pair, b.pts, b.duration)
                if n == (frames or blurry.info.frames) // 2:
                    middle = pair
                if preview is not None and preview.show(pair, [f"frame {n + 1}", f"PSNR {scores_in[-1]:.2f} -> {scores_out[-1]:.2f} dB"]) in ("q", "closed"):
                    preview = None
                n += 1
            writer.close()
    finally:
        blurry.close()
        sharp.close()
    with atomic_output(image) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(middle if middle is not None else pair, cv2.COLOR_RGB2BGR))
    return DemoResult(video, image, n, n / seconds if seconds else 0.0, float(np.mean(scores_in)), float(np.mean(scores_out)))

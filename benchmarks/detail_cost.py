"""What the detail stage costs beside the network, as users run it.

The same frames go through ``Sharpener(model)`` with and without its detail stage, alternating
frame by frame so that drift in the machine's speed hits both alike; medians per frame, and the
median of the per-frame ratios. The stage's statistics are read as ``file`` and ``cam`` read them
(every ``VIDEO_DETAIL_EVERY`` frames).

    python benchmarks/detail_cost.py                  # the packaged 720p demo clip
    python benchmarks/detail_cost.py clip.mp4 --rounds 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from livesharp.bench import DEMO_CLIP
from livesharp.engine import Sharpener
from livesharp.int8 import cpu_kind
from livesharp.io import VideoReader
from livesharp.settings import VIDEO_DETAIL_EVERY


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clip", nargs="?", default=str(DEMO_CLIP), help="a video (default: the packaged 720p demo clip)")
    p.add_argument("--frames", type=int, default=48, help="frames of it to use (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="passes over them (default %(default)s)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--backend", default="openvino")
    a = p.parse_args()
    reader = VideoReader(a.clip)
    try:
        frames = [f.rgb for _, f in zip(range(a.frames), reader.frames())]
    finally:
        reader.close()
    on = Sharpener(a.model, device="cpu", backend=a.backend, detail_every=VIDEO_DETAIL_EVERY)
    off = Sharpener(a.model, device="cpu", backend=a.backend, detail=False)
    if on.stage is None:
        raise SystemExit(f"{a.model} has no detail stage")
    for s in (on, off):
        for f in frames[:4]:
            s.sharpen(f)  # compile, buffers, auto's precision choice
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(a.rounds):
        for i, f in enumerate(frames):
            for name, s in (("on", on), ("off", off)) if i % 2 else (("off", off), ("on", on)):
                t0 = time.perf_counter()
                s.sharpen(f)
                times[name].append(time.perf_counter() - t0)
    m = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    ratio = float(np.median(np.array(times["on"]) / np.array(times["off"])))
    h, w = frames[0].shape[:2]
    print(f"{cpu_kind()}, {a.backend} {on.precision}, {w}x{h}, medians of {len(times['on'])} frames: network {m['off']:.1f} ms, "
          f"with the stage {m['on']:.1f} ms: the stage {m['on'] - m['off']:.1f} ms (+{100 * (m['on'] / m['off'] - 1):.1f} %); "
          f"median per-frame ratio {ratio:.3f}")


if __name__ == "__main__":
    main()

"""Regenerate docs/demo_strip.jpg: four moments of `livesharp demo`'s input | output video.

    livesharp demo --out /tmp/livesharp-demo --no-preview && python docs/make_demo_strip.py /tmp/livesharp-demo
"""

import sys
from pathlib import Path

import av
import cv2
import numpy as np


def main(folder: str) -> None:
    video = Path(folder) / "livesharp_demo.mp4"
    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, 4).astype(int)]
    strip = np.concatenate([cv2.resize(f, (960, 270), interpolation=cv2.INTER_AREA) for f in picks], axis=0)
    out = Path(__file__).resolve().parent / "demo_strip.jpg"
    cv2.imwrite(str(out), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "livesharp-demo")

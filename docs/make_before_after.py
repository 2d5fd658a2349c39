"""Regenerate docs/before_after.jpg: `python docs/make_before_after.py` (needs ../shared/data).

Held-out frame 270 of the GoPro 240 fps clip, blurred with the GoPro recipe (11 frames), run
through the shipped tiny model. The 256 px crop is the one where the model gains most PSNR
over the input (chosen to show what it does, not a typical region; the whole-frame figures
are printed).
"""

from pathlib import Path

import livesharp.settings

livesharp.settings.apply_thread_policy()  # before torch loads OpenMP, as the CLI does

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from livesharp import ops  # noqa: E402
from livesharp.engine import Sharpener  # noqa: E402
from train.data import load_frames
from train.gopro import gopro_blur  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT.parent / "shared/data/gopro240_GOPR0477_11_00/GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv"


def mse(a, b):
    return np.mean((a.astype(float) - b) ** 2)


frames = load_frames(CLIP)
blur, sharp = gopro_blur(frames[265:276]), frames[270]
out, uns = Sharpener(model="tiny", device="cpu").sharpen(blur), ops.unsharp_mask(blur)
print("whole frame PSNR  input %.2f  unsharp %.2f  tiny %.2f" % tuple(10 * np.log10(255**2 / mse(x, sharp)) for x in (blur, uns, out)))
k = 256
_, y, x = max((mse(blur[y:y + k, x:x + k], sharp[y:y + k, x:x + k]) / mse(out[y:y + k, x:x + k], sharp[y:y + k, x:x + k]), y, x)
              for y in range(0, 720 - k, 32) for x in range(0, 1280 - k, 32))
panels = []
for img, label in ((blur, "blurry input"), (uns, "unsharp mask"), (out, "livesharp tiny"), (sharp, "ground truth")):
    p = cv2.resize(img[y:y + k, x:x + k], (384, 384), interpolation=cv2.INTER_NEAREST)
    ops._label(p, label)
    panels.append(p)
cv2.imwrite(str(ROOT / "docs/before_after.jpg"), cv2.cvtColor(np.concatenate(panels, 1), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])

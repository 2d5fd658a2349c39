"""Regenerate docs/before_after.jpg: `python -m docs.make_before_after` from the repository root (needs ../shared/data).

A real blurry/sharp pair from a GoPro scene no shipped model was trained on
(``gopro_real_pairs_val``, the validation set the model card quotes first), run through the
shipped tiny model. The image is the pair where the model gains most, and the 256 px crop the
one where it gains most PSNR over the input (chosen to show what it does, not a typical region;
the whole-frame figures of every pair are printed).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT.parent / "shared/data/gopro_real_pairs_val"


def main() -> None:
    import livesharp.settings

    livesharp.settings.apply_thread_policy()  # before torch loads OpenMP, as the CLI does

    import cv2
    import numpy as np

    from livesharp import ops
    from livesharp.engine import Sharpener
    from train.data import read_rgb

    def mse(a, b):
        return np.mean((a.astype(float) - b) ** 2)

    best = None
    with Sharpener(model="tiny", device="cpu") as s:
        for path in sorted((PAIRS / "blur").glob("*.png")):
            blur, sharp = read_rgb(path), read_rgb(PAIRS / "sharp" / path.name)
            out, uns = s.sharpen(blur), ops.unsharp_mask(blur)
            scores = [ops.psnr(x, sharp) for x in (blur, uns, out)]
            print("%s  whole frame PSNR  input %.2f  unsharp %.2f  tiny %.2f" % (path.name, *scores))
            if best is None or scores[2] - scores[0] > best[0]:
                best = (scores[2] - scores[0], path.name, blur, uns, out, sharp)
    _, name, blur, uns, out, sharp = best
    k = 256
    _, y, x = max((mse(blur[y:y + k, x:x + k], sharp[y:y + k, x:x + k]) / mse(out[y:y + k, x:x + k], sharp[y:y + k, x:x + k]), y, x)
                  for y in range(0, 720 - k, 32) for x in range(0, 1280 - k, 32))
    print(f"picture: {name}, crop at x={x} y={y}")
    panels = []
    for img, label in ((blur, "blurry input"), (uns, "unsharp mask"), (out, "livesharp tiny"), (sharp, "ground truth")):
        p = cv2.resize(img[y:y + k, x:x + k], (384, 384), interpolation=cv2.INTER_NEAREST)
        ops._label(p, label)
        panels.append(p)
    cv2.imwrite(str(ROOT / "docs/before_after.jpg"), cv2.cvtColor(np.concatenate(panels, 1), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


if __name__ == "__main__":
    main()

"""Regenerate docs/before_after.jpg and docs/before_after_soft.jpg: `python -m docs.make_before_after`
from the repository root (needs ../shared/data).

Motion blur: a real blurry/sharp pair from a GoPro scene no shipped model was trained on
(``gopro_real_pairs_val``, the validation set the model card quotes first), run through the
shipped tiny model. The image is the pair where the model gains most, and the 256 px crop the
one where it gains most PSNR over the input (chosen to show what it does, not a typical region;
the whole-frame figures of every pair are printed).

Softness: sharp GoPro frames of scenes no shipped model was trained on (``gopro_test_sharp_frames``,
set 4's frames) softened by set 4's Gaussian of sigma 1.6 (``train.soft.RECIPES``), through tiny
with and without its detail stage; the frame and crop chosen the same way.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT.parent / "shared/data/gopro_real_pairs_val"
SHARP = ROOT.parent / "shared/data/gopro_test_sharp_frames/sharp"


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

    def figure(pairs, methods: dict, out_name: str, input_label: str) -> None:
        """The pair where the last of ``methods`` gains most, its 256 px crop where it gains most, as
        input | each method | ground truth."""
        best = None
        for name, blur, sharp in pairs:
            outs = {label: fn(blur) for label, fn in methods.items()}
            scores = [ops.psnr(x, sharp) for x in (blur, *outs.values())]
            print(f"{name}  whole frame PSNR  input {scores[0]:.2f}  " + "  ".join(f"{k} {v:.2f}" for k, v in zip(outs, scores[1:])))
            if best is None or scores[-1] - scores[0] > best[0]:
                best = (scores[-1] - scores[0], name, blur, outs, sharp)
        _, name, blur, outs, sharp = best
        out, k = list(outs.values())[-1], 256
        _, y, x = max((mse(blur[y:y + k, x:x + k], sharp[y:y + k, x:x + k]) / mse(out[y:y + k, x:x + k], sharp[y:y + k, x:x + k]), y, x)
                      for y in range(0, blur.shape[0] - k, 32) for x in range(0, blur.shape[1] - k, 32))
        print(f"{out_name}: {name}, crop at x={x} y={y}")
        panels = []
        for img, label in ((blur, input_label), *((o, l) for l, o in outs.items()), (sharp, "ground truth")):
            p = cv2.resize(img[y:y + k, x:x + k], (384, 384), interpolation=cv2.INTER_NEAREST)
            ops._label(p, label)
            panels.append(p)
        cv2.imwrite(str(ROOT / "docs" / out_name), cv2.cvtColor(np.concatenate(panels, 1), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])

    from train.soft import RECIPES, degrade

    with Sharpener(model="tiny", device="cpu") as s, Sharpener(model="tiny", device="cpu", detail=False) as alone:
        blurred = ((p.name, read_rgb(p), read_rgb(PAIRS / "sharp" / p.name)) for p in sorted((PAIRS / "blur").glob("*.png")))
        figure(blurred, {"unsharp mask": ops.unsharp_mask, "livesharp tiny": s.sharpen}, "before_after.jpg", "blurry input")
        softened = ((p.name, degrade(read_rgb(p)[None], RECIPES["gauss1.6"], np.random.default_rng(0))[0], read_rgb(p)) for p in sorted(SHARP.glob("*.png")))
        figure(softened, {"unsharp mask": ops.unsharp_mask, "tiny --no-detail": alone.sharpen, "livesharp tiny": s.sharpen},
               "before_after_soft.jpg", "soft input (blur 1.6 px)")


if __name__ == "__main__":
    main()

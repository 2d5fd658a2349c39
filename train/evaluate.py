"""Evaluate a student against ground truth: ``python -m train.evaluate --data PATH --model NAME|PATH``.

Prints PSNR, SSIM and MS-SSIM for the blurry input, the unsharp-mask baseline and each model,
and for clips a flow-based warping error (how much the output flickers beyond real motion),
and writes the same as JSON. With ``--teacher`` it also reports PSNR against the teacher's
output (how much of the teacher a student holds); a slow teacher wants ``--crop``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from pytorch_msssim import ms_ssim, ssim

from livesharp import ops
from livesharp.engine import open_model
from livesharp.errors import LivesharpError
from train.data import DataError, GoProPairs, HighFpsBlur, load_frames, split_highfps
from train.losses import MS_SSIM_MIN_SIDE, psnr
from train.teachers import TeacherCache, TeacherError, make_teacher, teacher_targets

Method = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, H, W) float in [0, 1] -> same


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded as a saved frame would be."""
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def from_uint8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255


def unsharp(x: torch.Tensor) -> torch.Tensor:
    """The classical baseline, through the same uint8 function the product uses."""
    return torch.stack([from_uint8(ops.unsharp_mask(to_uint8(f))) for f in x])


def flow_warp_error(frames: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Mean |out[t] - warp(out[t+1])| over pixels where the flow is trustworthy, in 0..255 units.

    Flow is measured on the reference (ground-truth) frames with OpenCV's DIS; pixels where the
    forward and backward flows disagree by more than a pixel (occlusions) are left out.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    errs = []
    for t in range(len(frames) - 1):
        g0 = cv2.cvtColor(reference[t], cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(reference[t + 1], cv2.COLOR_RGB2GRAY)
        fwd = dis.calc(g0, g1, None)  # where each pixel of t is found in t+1
        bwd = dis.calc(g1, g0, None)
        h, w = g0.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = gx + fwd[..., 0], gy + fwd[..., 1]
        back = cv2.remap(bwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        valid = (np.linalg.norm(fwd + back, axis=2) < 1.0) & (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        warped = cv2.remap(frames[t + 1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        diff = np.abs(frames[t].astype(np.float32) - warped.astype(np.float32)).mean(axis=2)
        if valid.any():
            errs.append(float(diff[valid].mean()))
    return float(np.mean(errs)) if errs else float("nan")


def evaluate(methods: dict[str, Method], dataset, max_items: int | None = None, teacher=None, cache: TeacherCache | None = None) -> dict[str, dict[str, float]]:
    """Mean metrics of each method over the dataset's samples (dicts with (T,3,H,W) blur/sharp).

    With a ``teacher`` (and the ``cache`` its outputs go through), also ``psnr_teacher``: PSNR
    of each method's output against the teacher's, on the same frames; and the teacher itself
    as a row named ``teacher``, scored against the ground truth like the others.
    """
    names = [*methods, *(["teacher"] if teacher is not None else [])]
    sums: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    n = len(dataset) if max_items is None else min(len(dataset), max_items)
    with torch.no_grad():
        for i in range(n):
            sample = dataset[i]
            blur, sharp = sample["blur"], sample["sharp"]
            target = teacher_targets(teacher, cache, blur[None], [sample["source"]])[0] if teacher is not None else None
            outputs = {name: fn(blur) for name, fn in methods.items()} | ({"teacher": target} if target is not None else {})
            for name, out in outputs.items():
                out = out.clamp(0, 1)
                # Score what a user would see: the output rounded to 8 bits.
                out = torch.stack([from_uint8(to_uint8(f)) for f in out])
                m = sums[name]
                m.setdefault("psnr", []).append(float(psnr(out, sharp)))
                m.setdefault("ssim", []).append(float(ssim(out, sharp, data_range=1.0)))
                if target is not None and name != "teacher":
                    m.setdefault("psnr_teacher", []).append(float(psnr(out, target)))
                if min(sharp.shape[-2:]) > MS_SSIM_MIN_SIDE:
                    m.setdefault("ms_ssim", []).append(float(ms_ssim(out, sharp, data_range=1.0)))
                if len(out) > 1:
                    ref = [to_uint8(f) for f in sharp]
                    m.setdefault("warp_error", []).append(flow_warp_error([to_uint8(f) for f in out], ref))
    return {name: {k: float(np.mean(v)) for k, v in m.items()} | {"items": n} for name, m in sums.items()}


def student_method(net: torch.nn.Module, device: torch.device) -> Method:
    net = net.eval().to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x.to(device)).float().cpu()

    return run


def baseline_methods() -> dict[str, Method]:
    return {"input": lambda x: x, "unsharp": unsharp}


def format_table(results: dict[str, dict[str, float]]) -> str:
    cols = ["psnr", "ssim", "ms_ssim", "warp_error", "psnr_teacher"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    width = max([16, *(len(name) + 2 for name in results)])
    head = f"{'method':<{width}}" + "".join(f"{c:>13}" for c in cols)
    rows = [head, "-" * len(head)]
    for name, r in results.items():
        rows.append(f"{name:<{width}}" + "".join(f"{r[c]:>13.4f}" if c in r else f"{'-':>13}" for c in cols))
    return "\n".join(rows)


def open_eval_data(path: str | Path, clip_len: int = 1, every: int = 4, window: tuple[int, int] = (7, 13), crop: int | None = None):
    """A GoPro_Large folder (its test split) or a high-frame-rate video/folder (its held-out tail)."""
    path = Path(path)
    if path.is_dir() and (path / "test").is_dir():
        return GoProPairs(path, "test", clip_len=clip_len, crop=crop, augment=False)
    frames = load_frames(path)
    _, val = split_highfps(len(frames), max_window=window[1])
    return HighFpsBlur(frames, window=window, clip_len=clip_len, frame_range=val, crop=crop, augment=False, every=every, name=path.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m train.evaluate --data ../shared/data/gopro240_GOPR0477_11_00/GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv --model models/livesharp-tiny.pt",
    )
    p.add_argument("--data", required=True, help="GOPRO_Large root (uses test/), or a high-frame-rate video or frame folder (uses its held-out last 20%%)")
    p.add_argument("--model", required=True, action="append", help="tiny | small (shipped weights) or a checkpoint path; repeat to compare several")
    p.add_argument("--clip-len", type=int, default=2, help="frames per clip; 2 or more also measures the warping error (default 2)")
    p.add_argument("--window", type=int, nargs=2, default=(7, 13), metavar=("LO", "HI"), help="high-fps data: sharp frames averaged per blurry frame, as in training (default 7 13)")
    p.add_argument("--every", type=int, default=4, help="high-fps data: a validation clip every N source frames (default 4)")
    p.add_argument("--max-items", type=int, default=None, help="evaluate at most this many clips")
    p.add_argument("--crop", type=int, default=None, help="score a centre crop of this size instead of whole frames")
    p.add_argument("--teacher", default="none", help="also report PSNR against this teacher's output (restormer:PATH | onnx:PATH)")
    p.add_argument("--teacher-cache", default="cache/teacher", help="where teacher outputs are cached (default cache/teacher)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", default=None, help="write the results here (default: eval_<model>.json)")
    a = p.parse_args(argv)
    try:
        from livesharp.engine import resolve_device

        device = resolve_device(a.device)
        methods = baseline_methods()
        for model in a.model:
            net, name = open_model(model)
            if net is None:
                raise LivesharpError("--model must be a network; the unsharp baseline is always reported")
            if name in methods:  # two checkpoints both called student.pt: tell them apart
                name = str(Path(model).parent.name) + "/" + name
            methods[name] = student_method(net, device)
        data = open_eval_data(a.data, clip_len=a.clip_len, every=a.every, window=tuple(a.window), crop=a.crop)
        teacher = make_teacher(a.teacher, device)
    except (LivesharpError, DataError, TeacherError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results = evaluate(methods, data, a.max_items, teacher=teacher, cache=TeacherCache(a.teacher_cache))
    print(format_table(results))
    out = Path(a.json or f"eval_{name}.json")
    out.write_text(json.dumps({"data": str(a.data), "model": str(a.model), "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

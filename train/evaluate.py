"""Evaluate students against ground truth: ``python -m train.evaluate --model NAME|PATH [sets]``.

A number counts only when it was measured on data the model never saw, from other scenes. So
there are three sets, reported in this order, each optional:

1. ``--real-pairs DIR``: **real blur from unseen scenes** (``DIR/blur/X.png`` with its
   ``DIR/sharp/X.png``, e.g. ``../shared/data/gopro_real_pairs_val``): PSNR, SSIM and the gain
   over the blurry input, per image and as a mean, and the worst image's gain.
2. ``--data PATH``: a high-frame-rate clip's held-out tail (blurred by the GoPro recipe) or a
   GOPRO_Large test split. For the 240 fps clip training uses, this is the *same scene as
   training*: it shows how well a model fits that scene, not whether it helps anyone else.
3. ``--sharp DIR ...``: **do no harm**: sharp frames as input (plus the held-out sharp frames of
   ``--data`` when it is a clip). PSNR(output, input) and the mean brightness shift in grey
   levels; a sharpener that changes a sharp frame much, or darkens it, harms every video.
4. ``--soft DIR ...``: **softness**: sharp frames of unseen scenes (e.g.
   ``../shared/data/gopro_test_sharp_frames``) softened by ``train.soft.RECIPES`` (lens blur,
   defocus, upscaled footage, compression): the gain per recipe, beside the best of a grid of
   unsharp masks chosen per recipe, the fixed filter a user could tune by hand.

Prints PSNR, SSIM and MS-SSIM for the blurry input, the unsharp-mask baseline and each model,
and for clips a flow-based warping error (how much the output flickers beyond real motion;
a "ground truth" row gives the sharp frames' own, what a perfect deblurrer would score), and
writes the same as JSON. With ``--teacher`` it also reports PSNR against the teacher's
output (how much of the teacher a student holds); a slow teacher wants ``--crop``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from pytorch_msssim import ms_ssim, ssim

from livesharp import ops
from livesharp.engine import find_stage, open_model
from livesharp.errors import LivesharpError
from livesharp.files import atomic_output
from train.data import IMAGE_SUFFIXES, DataError, list_images, load_frames, read_rgb
from train.gopro import GoProPairs, HighFpsBlur, split_highfps
from train.losses import MS_SSIM_MIN_SIDE, psnr
from train.soft import UNSHARP_GRID, SoftnessSet, by_recipe
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


def evaluate(methods: dict[str, Method], dataset, max_items: int | None = None, teacher=None, cache: TeacherCache | None = None,
             per_item: bool = False, gains: bool = True, structure: bool = True, bands: bool = False) -> dict[str, dict[str, float]]:
    """Mean metrics of each method over the dataset's samples (dicts with (T,3,H,W) blur/sharp).

    ``shift`` is the mean brightness change of the output against the ground truth in grey
    levels (0-255; negative = darker). With an ``input`` method among ``methods`` and ``gains``,
    ``gain`` is each method's PSNR minus the input's, and ``worst_gain`` its smallest value over
    the items (off for sharp-input sets, where the input is the target).
    ``structure`` False leaves out SSIM and MS-SSIM (seconds per 720p frame on a CPU core).
    ``per_item`` True adds ``items_detail``: {source: {metric: value}} for each method.
    Clips (T >= 2) add ``warp_error`` to each method and a ``ground truth`` row holding only
    the sharp frames' own warping error.

    With a ``teacher`` (and the ``cache`` its outputs go through), also ``psnr_teacher``: PSNR
    of each method's output against the teacher's, on the same frames; and the teacher itself
    as a row named ``teacher``, scored against the ground truth like the others.

    ``bands`` True adds ``band_energy`` to each method: its luma error's energy per band of
    ``BAND_PERIODS``, summed over the items (``error_bands`` reads it).
    """
    names = [*methods, *(["teacher"] if teacher is not None else [])]
    sums: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    energy = {name: 0.0 for name in names}  # with ``bands``: each method's band energies, summed
    truth_warp: list[float] = []  # the sharp frames' own warping error: what a perfect output scores
    n = len(dataset) if max_items is None else min(len(dataset), max_items)
    sources = []
    with torch.no_grad():
        for i in range(n):
            sample = dataset[i]
            sources.append(sample["source"])
            blur, sharp = sample["blur"], sample["sharp"]
            if len(sharp) > 1:
                ref = [to_uint8(f) for f in sharp]
                truth_warp.append(flow_warp_error(ref, ref))
            target = teacher_targets(teacher, cache, blur[None], [sample["source"]])[0] if teacher is not None else None
            outputs = {name: fn(blur) for name, fn in methods.items()} | ({"teacher": target} if target is not None else {})
            for name, out in outputs.items():
                out = out.clamp(0, 1)
                # Score what a user would see: the output rounded to 8 bits.
                out = torch.stack([from_uint8(to_uint8(f)) for f in out])
                m = sums[name]
                m.setdefault("psnr", []).append(float(psnr(out, sharp)))
                if structure:
                    m.setdefault("ssim", []).append(float(ssim(out, sharp, data_range=1.0)))
                m.setdefault("shift", []).append(float((out - sharp).mean() * 255))
                if target is not None and name != "teacher":
                    m.setdefault("psnr_teacher", []).append(float(psnr(out, target)))
                if structure and min(sharp.shape[-2:]) > MS_SSIM_MIN_SIDE:
                    m.setdefault("ms_ssim", []).append(float(ms_ssim(out, sharp, data_range=1.0)))
                if len(out) > 1:
                    m.setdefault("warp_error", []).append(flow_warp_error([to_uint8(f) for f in out], ref))
                if bands:
                    energy[name] = energy[name] + band_energy(out - sharp)
    results = {name: {k: float(np.mean(v)) for k, v in m.items()} | {"items": n} for name, m in sums.items()}
    if bands:
        for name in names:
            results[name]["band_energy"] = [float(e) for e in energy[name]]
    if truth_warp:  # a row of its own, after the methods: only its warping error means anything
        results["ground truth"] = {"warp_error": float(np.mean(truth_warp)), "items": n}
    if gains and "input" in sums:
        for name, m in sums.items():
            gains = [a - b for a, b in zip(m["psnr"], sums["input"]["psnr"])]
            results[name] |= {"gain": float(np.mean(gains)), "worst_gain": float(min(gains))}
    if per_item:
        for name, m in sums.items():
            results[name]["items_detail"] = {src: {k: v[i] for k, v in m.items()} for i, src in enumerate(sources)}
    return results


# The bands of ``error_bands``, as periods in px from coarse to fine: > 64, 64-32, ... 8-4, < 4.
BAND_PERIODS = (64, 32, 16, 8, 4)


@functools.lru_cache(maxsize=8)
def _band_of(h: int, w: int) -> torch.Tensor:
    """Which band of ``BAND_PERIODS`` each coefficient of an (h, w) frame's rfft2 falls in (flat);
    the same for every method and item of one size."""
    edges = [1 / p for p in BAND_PERIODS]  # cycles per px; the last band holds the corners
    radius = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.rfftfreq(w)[None, :] ** 2)
    return torch.bucketize(radius, torch.tensor(edges), right=True).flatten()


def band_energy(error: torch.Tensor) -> np.ndarray:
    """The energy of an error's luma (frames, 3, H, W) in each band of ``BAND_PERIODS``, frames summed."""
    power = torch.fft.rfft2(error.mean(-3)).abs().pow(2).sum(0)
    return torch.bincount(_band_of(*error.shape[-2:]), power.flatten().double(), len(BAND_PERIODS) + 1).numpy()


def error_bands(results: dict[str, dict]) -> dict[str, list[float]]:
    """Where the error lies, by spatial frequency, from ``evaluate(..., bands=True)``'s results:
    ``share``, each band's part of the blur's own error (the ``input`` row, which must be there),
    and for every method the dB it removes from it in each band (0 for ``input``; negative: error
    added).

    Set 1's blur is mostly at periods of 8-32 px, and a method's mean gain does not say which
    of its bands it restores: every ``tiny`` so far removes about 4 dB at 32-64 px and nothing below 8
    (train/README.md, "Where set 1's error lies")."""
    energy = {name: np.asarray(r["band_energy"]) for name, r in results.items() if "band_energy" in r}
    base = energy["input"]
    return {"share": list(base / base.sum())} | {name: list(10 * np.log10(base / np.maximum(e, 1e-30))) for name, e in energy.items()}


def format_bands(bands: dict[str, list[float]]) -> str:
    """``error_bands`` as a table: a row per method, a column per band."""
    p = BAND_PERIODS
    heads = [f"> {p[0]} px", *(f"{a}-{b} px" for a, b in zip(p, p[1:])), f"< {p[-1]} px"]
    rows = [f"{'dB removed, by period':<24}" + "".join(f"{h:>10}" for h in heads),
            f"{'the blur error there':<24}" + "".join(f"{s:>10.1%}" for s in bands["share"])]
    rows += [f"{name[-24:]:<24}" + "".join(f"{v:>+10.2f}" for v in row) for name, row in bands.items() if name not in ("share", "input")]
    return "\n".join(rows)


def student_method(net: torch.nn.Module, device: torch.device) -> Method:
    net = net.eval().to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x.to(device)).float().cpu()

    return run


def staged_method(student: Method, stage) -> Method:
    """``student``, then a detail stage (``livesharp.detail``) on uint8 frames, as the product runs it."""
    def run(x: torch.Tensor) -> torch.Tensor:
        out = []
        for frame, y in zip(x, student(x)):
            f8 = to_uint8(frame)
            out.append(from_uint8(stage.apply(f8, to_uint8(y), stage.amounts(f8))))
        return torch.stack(out)

    return run


def baseline_methods() -> dict[str, Method]:
    return {"input": lambda x: x, "unsharp": unsharp}


def unsharp_grid() -> dict[str, Method]:
    """The unsharp masks of ``train.soft.UNSHARP_GRID``, named ``unsharp a<amount> s<sigma>``."""
    def one(amount: float, sigma: float) -> Method:
        return lambda x: torch.stack([from_uint8(ops.unsharp_mask(to_uint8(f), amount, sigma)) for f in x])

    return {f"unsharp a{a:g} s{s:g}": one(a, s) for a, s in UNSHARP_GRID}


def soft_report(results: dict) -> tuple[dict[str, dict[str, float]], str]:
    """Set 4 per recipe: ({method or "best unsharp": {recipe: gain}}, a printable table).

    The unsharp grid's rows collapse into one, the best mask for each recipe on its own (named
    in the table): the bar a learned sharpener has to clear on every kind of softness.
    """
    gains = by_recipe(results)
    recipes = list(gains["input"])
    grid = {n: g for n, g in gains.items() if n.startswith("unsharp a")}
    rows = {n: g for n, g in gains.items() if n != "input" and n not in grid}
    if grid:
        best = {r: max(grid, key=lambda n: grid[n][r]) for r in recipes}
        rows["best unsharp"] = {r: grid[best[r]][r] for r in recipes}
    rows = {n: g | {"mean": float(np.mean([g[r] for r in recipes]))} for n, g in rows.items()}
    width = max([16, *(len(n) + 2 for n in rows)])
    lines = [f"{'gain over input (dB)':<{width}}" + "".join(f"{r:>20}" for r in [*recipes, "mean"])]
    for name, g in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{g[r]:>+20.3f}" for r in [*recipes, "mean"]))
    if grid:
        lines.append(f"{'(best mask)':<{width}}" + "".join(f"{best[r][8:]:>20}" for r in recipes))
    return rows, "\n".join(lines)


def format_table(results: dict[str, dict[str, float]]) -> str:
    cols = ["psnr", "gain", "worst_gain", "ssim", "ms_ssim", "shift", "warp_error", "psnr_teacher"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    width = max([16, *(len(name) + 2 for name in results)])
    head = f"{'method':<{width}}" + "".join(f"{c:>13}" for c in cols)
    rows = [head, "-" * len(head)]
    for name, r in results.items():
        rows.append(f"{name:<{width}}" + "".join(f"{r[c]:>13.4f}" if c in r else f"{'-':>13}" for c in cols))
    return "\n".join(rows)


class PairFolder:
    """Real blurry/sharp pairs: ``root/blur/X`` and ``root/sharp/X``, whole frames, sorted by name.

    Samples are like the training sets': {"blur", "sharp": (1, 3, H, W) float32, "source"}.
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        blur, sharp = root / "blur", root / "sharp"
        if not (blur.is_dir() and sharp.is_dir()):
            raise DataError(f"{root}: expected the folders {blur} and {sharp} holding images of the same names")
        self.names = sorted(p.name for p in blur.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        missing = [n for n in self.names if not (sharp / n).is_file()]
        if not self.names or missing:
            raise DataError(f"{root}: {'no images in ' + str(blur) if not self.names else 'no sharp partner ' + str(sharp / missing[0])}")
        self.root = root

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        name = self.names[i]
        blur, sharp = read_rgb(self.root / "blur" / name), read_rgb(self.root / "sharp" / name)
        if blur.shape != sharp.shape:
            raise DataError(f"{self.root / 'blur' / name} and its sharp partner differ in size")
        return {"blur": from_uint8(blur)[None], "sharp": from_uint8(sharp)[None], "source": name}


class SharpFrames:
    """Sharp frames as both input and target: PSNR(output, input) and ``shift`` measure harm.

    frames: image paths, or (name, (H, W, 3) uint8) pairs (e.g. a clip's held-out frames).
    """

    def __init__(self, frames):
        self.frames = [(p.name, p) if isinstance(p, Path) else p for p in frames]
        if not self.frames:
            raise DataError("no sharp frames to measure harm on")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict:
        name, img = self.frames[i]
        x = from_uint8(read_rgb(img) if isinstance(img, Path) else img)[None]
        return {"blur": x, "sharp": x, "source": name}


def clip_sharp_frames(path: str | Path, every: int = 8, max_window: int = 13) -> list[tuple[str, np.ndarray]]:
    """Every ``every``-th frame of a high-frame-rate clip's held-out tail, as sharp inputs."""
    frames = load_frames(path)
    _, (start, stop) = split_highfps(len(frames), max_window=max_window)
    return [(f"{Path(path).name}#{i}", frames[i]) for i in range(start, stop, every)]


SETS = {  # key: what a report calls it
    "real": "1. real blur, unseen scenes",
    "clip": "2. held-out frames (same scene as training)",
    "sharp": "3. do no harm: sharp input",
    "soft": "4. softness: sharp frames of unseen scenes, softened by fixed recipes",
}


def open_sets(real_pairs: str | Path | None = None, data: str | Path | None = None, sharp: Sequence[str | Path] = (),
              clip_len: int = 1, every: int = 4, window: tuple[int, int] = (7, 13), crop: int | None = None,
              soft: Sequence[str | Path] = ()) -> dict:
    """The validation sets that were given, keyed as in ``SETS``, in report order."""
    sets = {}
    if real_pairs:
        sets["real"] = PairFolder(real_pairs)
    if data:
        sets["clip"] = open_eval_data(data, clip_len=clip_len, every=every, window=window, crop=crop)
    harm = [p for folder in sharp for p in list_images(folder)]
    if data and not (Path(data).is_dir() and (Path(data) / "test").is_dir()):
        harm += clip_sharp_frames(data, max_window=window[1])
    if harm:
        sets["sharp"] = SharpFrames(harm)
    if soft:
        sets["soft"] = SoftnessSet(soft)
    return sets


# Ship bar (issue 12) on set 3; a checkpoint that misses it pays for it in its score.
HARM_MIN_PSNR, HARM_MAX_SHIFT = 35.0, 0.3


def selection_score(results: dict) -> float:
    """One number to choose a checkpoint by: set 1's mean gain (dB) plus set 4's, less set 3's harm.

    results: {set key: evaluate(...) output} holding "real", "soft" and/or "sharp" rows for "student".
    Every dB below 35 dB PSNR(output, input) on sharp input and every grey level of brightness
    shift beyond 0.3 costs one dB of gain. Never set 2: fitting the training scene better is
    not what users see.
    """
    score = 0.0
    for key in ("real", "soft"):  # set 4's mean gain is the mean over its recipes (same frames in each)
        if key in results:
            score += results[key]["student"]["gain"]
    if "sharp" in results:
        s = results["sharp"]["student"]
        score -= max(0.0, HARM_MIN_PSNR - s["psnr"]) + max(0.0, abs(s["shift"]) - HARM_MAX_SHIFT)
    return score


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
        epilog="example (all three sets, as the model card quotes them):\n"
               "  python -m train.evaluate --model models/livesharp-tiny.pt \\\n"
               "    --real-pairs ../shared/data/gopro_real_pairs_val \\\n"
               "    --data ../shared/data/gopro240_GOPR0477_11_00/GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv \\\n"
               "    --sharp ../shared/data/gopro_test_sharp_frames",
    )
    p.add_argument("--model", required=True, action="append", help="tiny | small (shipped weights) or a checkpoint path; repeat to compare several")
    p.add_argument("--real-pairs", default=None, metavar="DIR", help="set 1: real blurry/sharp pairs of unseen scenes, DIR/blur/X and DIR/sharp/X")
    p.add_argument("--data", default=None, help="set 2: a high-frame-rate video or frame folder (uses its held-out last 20%%), or a GOPRO_Large root (uses test/)")
    p.add_argument("--sharp", nargs="*", default=[], metavar="DIR", help="set 3: folders of sharp frames, used as input to measure harm (a --data clip adds its held-out sharp frames)")
    p.add_argument("--soft", nargs="*", default=[], metavar="DIR", help="set 4: folders of sharp frames of unseen scenes, softened by fixed recipes (train.soft.RECIPES)")
    p.add_argument("--clip-len", type=int, default=2, help="set 2: frames per clip; 2 or more also measures the warping error (default 2)")
    p.add_argument("--window", type=int, nargs=2, default=(7, 13), metavar=("LO", "HI"), help="high-fps data: sharp frames averaged per blurry frame, as in training (default 7 13)")
    p.add_argument("--every", type=int, default=4, help="high-fps data: a validation clip every N source frames (default 4)")
    p.add_argument("--max-items", type=int, default=None, help="set 2: evaluate at most this many clips")
    p.add_argument("--crop", type=int, default=None, help="set 2: score a centre crop of this size instead of whole frames")
    p.add_argument("--teacher", default="none", help="set 2: also report PSNR against this teacher's output (restormer:PATH | onnx:PATH)")
    p.add_argument("--teacher-cache", default="cache/teacher", help="where teacher outputs are cached (default cache/teacher)")
    p.add_argument("--bands", action="store_true", help="set 1: also how much of the blur's error each model removes per band of spatial frequency")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", default=None, help="also write the results here as JSON (default: print only)")
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
            stage = find_stage(name, net, None) if model == name else None  # a shipped variant's stage, on its own weights
            if stage is not None:
                methods[f"{name} + detail"] = staged_method(methods[name], stage)
        if not (a.real_pairs or a.data or a.sharp or a.soft):
            raise LivesharpError("nothing to evaluate on: pass --real-pairs DIR, --data PATH, --sharp DIR and/or --soft DIR")
        sets = open_sets(a.real_pairs, a.data, a.sharp, clip_len=a.clip_len, every=a.every, window=tuple(a.window), crop=a.crop, soft=a.soft)
        teacher = make_teacher(a.teacher, device)
    except (LivesharpError, DataError, TeacherError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results = {}
    for key, data in sets.items():
        if key == "clip":
            results[key] = evaluate(methods, data, a.max_items, teacher=teacher, cache=TeacherCache(a.teacher_cache))
        elif key == "soft":
            results[key] = evaluate(methods | unsharp_grid(), data, per_item=True, structure=False)
            per_recipe, table = soft_report(results[key])
            results[key] = {n: {k: v for k, v in r.items() if k != "items_detail"} for n, r in results[key].items() if not n.startswith("unsharp a")}
            results[key]["per_recipe"] = per_recipe
            print(f"{SETS[key]} ({results[key]['input']['items']} items)")
            print(table)
            print()
            continue
        else:
            results[key] = evaluate(methods, data, per_item=key == "real", gains=key != "sharp", bands=a.bands and key == "real")
        print(f"{SETS[key]} ({results[key]['input']['items']} items)")
        print(format_table(results[key]))
        if key == "real":
            print(format_items(results[key]))
            if a.bands:
                results["real_bands"] = error_bands(results[key])
                print(format_bands(results["real_bands"]))
        print()
    if a.json:  # only where asked: an evaluation never writes over a file on its own
        # "results" stays the --data set's table, as before the three sets existed.
        doc = {"model": a.model, "real_pairs": a.real_pairs, "data": a.data, "sharp": a.sharp, "sets": results, "results": results.get("clip")}
        with atomic_output(a.json) as tmp:
            Path(tmp).write_text(json.dumps(doc, indent=2))
        print(f"wrote {a.json}")
    return 0


def format_items(results: dict) -> str:
    """Per-image PSNR gain over the input of each method (set 1's table of images)."""
    names = [n for n in results if n != "input"]
    sources = list(results["input"]["items_detail"])
    width = max(len(s) for s in sources) + 2
    rows = [f"{'gain over input (dB)':<{width}}" + "".join(f"{n[-12:]:>13}" for n in names)]
    base = results["input"]["items_detail"]
    for src in sources:
        rows.append(f"{src:<{width}}" + "".join(f"{results[n]['items_detail'][src]['psnr'] - base[src]['psnr']:>+13.3f}" for n in names))
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())

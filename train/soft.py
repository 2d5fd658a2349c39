"""Softness as cameras make it, taught in the footage's own domain; and set 4, which measures it.

Webcams and phones mostly make soft footage, not motion blur: lens blur and mild defocus,
video upscaled from a smaller sensor crop, low-bitrate H.264 or JPEG, sensor noise. A network
learns the per-pixel sharpness of its *targets* (``../shared/notes/softness.md``): softness
taught on crisp stills makes it sharpen video past its own ground truth and change frames that
are already as sharp as video gets. So the targets here have a video frame's sharpness:

- frames of a high-frame-rate clip (its training range only), as they are;
- stills shrunk by 0.5-1x and softened by a Gaussian of sigma 0.5-0.9, as a video frame is;

and the inputs are those targets softened by random, Real-ESRGAN-like combinations of
optical blur (Gaussian, disc, a little motion), down-and-up scaling, noise and compression,
once or twice over. A share of samples are sharp -> sharp, unchanged: the network must leave
sharp video alone.

``RECIPES`` are set 4's fixed degradations, the four kinds a user meets, each measured against
the best of a grid of unsharp masks (``UNSHARP_GRID``): a learned sharpener has to beat every
fixed filter on each kind, since a filter cannot tell sharp from soft.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from train.camera import h264, jpeg, to_uint8
from train.data import DataError, _check_index, _tag, apply_aug, choose_aug, choose_box, list_images, load_frames, read_rgb, to_sample
from train.gopro import split_highfps
from train.synthetic import defocus_kernel, gaussian_kernel, linear_kernel

INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}

# One degradation step: (name, parameters). Names: gauss (sigma), disc (radius), motion (length,
# angle), resize (factor, down, up), noise (sigma), jpeg (quality), h264 (crf).
Step = tuple


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 convolved with ``kernel``, edges mirrored (no dark border)."""
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def resize_round_trip(img: np.ndarray, factor: float, down: str, up: str) -> np.ndarray:
    """Shrink to ``factor`` of the size, then back: footage upscaled from a smaller capture."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=INTERPOLATIONS[down])
    return cv2.resize(small, (w, h), interpolation=INTERPOLATIONS[up])


def degrade(img: np.ndarray, steps: Sequence[Step], rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the same, softened by ``steps`` in order (noise draws from ``rng``).

    Every frame of a clip gets the same steps, as a camera softens every frame alike. Blur and
    scaling work on floats; compression rounds to 8 bits where a codec would.
    """
    x = img.astype(np.float32) / 255
    for name, *p in steps:
        if name in ("jpeg", "h264"):
            u8 = to_uint8(x)
            u8 = np.stack([jpeg(f, p[0]) for f in u8]) if name == "jpeg" else h264(_even(u8), p[0])[:, : u8.shape[1], : u8.shape[2]]
            x = u8.astype(np.float32) / 255
        elif name == "noise":
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * p[0]
        elif name == "resize":
            for t in range(len(x)):
                x[t] = resize_round_trip(x[t], *p)
        else:
            kernels = {"gauss": lambda: gaussian_kernel(p[0]), "disc": lambda: defocus_kernel(p[0]),
                       "motion": lambda: linear_kernel(p[0], p[1], 2 * int(np.ceil(p[0] / 2)) + 3)}
            if name not in kernels:
                raise ValueError(f"unknown degradation step {name!r}")
            kernel = kernels[name]()  # once per step, for every frame of the clip
            for t in range(len(x)):
                x[t] = blur(x[t], kernel)
    return to_uint8(x)


def _even(clip: np.ndarray) -> np.ndarray:
    """Edge-pad a clip to even height and width (H.264 in yuv420p needs them)."""
    h, w = clip.shape[1:3]
    return np.pad(clip, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _resize_step(rng: np.random.Generator, smallest: float, largest: float) -> Step:
    """Footage captured at ``smallest``-``largest`` of the size, shrunk and enlarged by common filters."""
    return ("resize", float(rng.uniform(smallest, largest)), str(rng.choice(["area", "linear", "cubic"])), str(rng.choice(["linear", "cubic"])))


def _noise_step(rng: np.random.Generator, scale: float = 1.0) -> Step:
    return ("noise", float(rng.uniform(0.002, 0.015) * scale))


def _codec_step(rng: np.random.Generator, codec: str) -> Step:
    """JPEG 60-90 or H.264 CRF 24-36, as webcams and calls store footage."""
    return ("jpeg", int(rng.integers(60, 91))) if codec == "jpeg" else ("h264", int(rng.integers(24, 37)))


def _optical_steps(rng: np.random.Generator, scale: float) -> list[Step]:
    """A lens blur: Gaussian sigma 0.6-2, disc radius 1-3, or a Gaussian with 1-4 px of motion."""
    kind = rng.choice(["gauss", "disc", "mix"], p=[0.45, 0.3, 0.25])
    if kind == "gauss":
        return [("gauss", float(rng.uniform(0.6, 2.0) * scale))]
    if kind == "disc":
        return [("disc", float(rng.uniform(1.0, 3.0) * scale))]
    return [("gauss", float(rng.uniform(0.5, 1.4) * scale)), ("motion", float(rng.uniform(1.0, 4.0) * scale), float(rng.uniform(0, np.pi)))]


def sample_steps(rng: np.random.Generator, upscaled: float = 0.0, clean: float = 0.0, codec: float = 0.0) -> tuple[Step, ...]:
    """A random softening: one or two rounds of optical blur / scaling, noise and compression.

    Calibrated to what cameras make of video-sharp frames: Gaussian sigma 0.6-2, disc radius
    1-3, a lens blur with 1-4 px of motion, footage upscaled from 0.4-0.8 of its size (half
    the time with no optical blur); read noise up to 0.015; JPEG 60-90 or H.264 CRF 24-36 as
    webcams and calls store it. A share ``upscaled`` of the draws is nothing but footage
    upscaled from a smaller capture and compressed (with read noise 40 % of the time), the kind
    where sharpening only amplifies the codec: the network must learn to tell it from lens blur.
    A share ``clean`` is a lens blur alone, stored losslessly (no noise, no codec): the one kind
    where undoing the blur in full pays, +5.7 dB on a Gaussian of sigma 1.6 by the best linear
    filter against +2.1 to +2.6 with a little noise or JPEG, so the network must learn to tell
    clean footage too, which the random recipe makes in about one softened sample in six. A share
    ``codec`` is sharp footage that is only compressed (with read noise 40 % of the time), as a
    video call stores a sharp camera: nothing to undo, where the network's correction amplifies
    the codec (H.264 CRF 32 on sharp frames: −0.77 dB).
    """
    if clean and rng.random() < clean:
        return tuple(_optical_steps(rng, 1.0))
    if codec and rng.random() < codec:
        steps = [_noise_step(rng)] if rng.random() < 0.4 else []
        return (*steps, _codec_step(rng, "jpeg" if rng.random() < 0.5 else "h264"))
    if upscaled and rng.random() < upscaled:
        steps = [_resize_step(rng, 0.4, 0.8)]
        if rng.random() < 0.4:
            steps.append(_noise_step(rng))
        return (*steps, _codec_step(rng, "jpeg" if rng.random() < 0.6 else "h264"))
    steps: list[Step] = []
    for second in (False, True):
        if second and rng.random() >= 0.3:
            break
        scale = 0.7 if second else 1.0  # the second round is lighter, as in Real-ESRGAN
        # Upscaled footage is often nothing but the round trip and a codec (set 4's fourth
        # recipe), where sharpening only amplifies the codec's blocks: half the resized samples
        # have no optical blur, so the network meets that case as often as the blurred one.
        resize = rng.random() < (0.5 if not second else 0.2)
        optical = rng.random() < (0.5 if resize else 0.8 if not second else 0.6)
        if not (optical or resize):
            optical = True
        if optical:
            steps += _optical_steps(rng, scale)
        if resize:
            steps.append(_resize_step(rng, *((0.6, 0.9) if second else (0.4, 0.8))))
        if rng.random() < 0.4:
            steps.append(_noise_step(rng, scale))
        draw = rng.random()
        if draw < 0.7:  # else no codec: footage stored losslessly or at a high bitrate
            steps.append(_codec_step(rng, "jpeg" if draw < 0.45 else "h264"))
    return tuple(steps)


def draw_video_sharpness(rng: np.random.Generator, smallest: int, side: int) -> tuple[float, float]:
    """(factor, sigma) for ``video_sharpness`` of a still whose shorter side is ``side``: shrunk
    0.5-1x but never below ``smallest`` px, then a Gaussian of sigma 0.5-0.9."""
    factor = float(min(1.0, max(rng.uniform(0.5, 1.0), smallest / side)))
    return factor, float(rng.uniform(0.5, 0.9))


def video_sharpness(img: np.ndarray, factor: float, sigma: float) -> np.ndarray:
    """A still made as sharp as a video frame: shrunk by ``factor`` (<= 1), then a Gaussian."""
    if factor < 1:
        img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    x = blur(img.astype(np.float32) / 255, gaussian_kernel(sigma)) if sigma > 0 else img.astype(np.float32) / 255
    return to_uint8(x)


@dataclass(frozen=True)
class SoftPlan:
    """Everything random about one sample, drawn before any pixel is touched."""

    source: int  # index into the dataset's sources
    frame: int  # first frame (video) or 0 (still)
    shrink: float  # still -> video sharpness: resize factor (1 for video frames)
    target_sigma: float  # and its Gaussian (0 for video frames)
    box: tuple[int, int, int, int]
    hflip: bool
    turns: int
    steps: tuple  # () = sharp -> sharp


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding its pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except OSError:
        raise DataError(f"cannot read image {path}") from None


class SoftBlur(Dataset):
    """Video-sharp targets and their softened inputs (see the module's docstring).

    sources: video files (their training range, frames ``every`` apart) and folders of stills.
    """

    def __init__(self, sources: Sequence[str | Path], crop: int = 128, clip_len: int = 1, seed: int = 0, length: int = 1000,
                 sharp_fraction: float = 0.3, every: int = 3, min_edge_energy: float = 0.0, augment: bool = True, max_window: int = 13,
                 upscaled_fraction: float = 0.0, clean_fraction: float = 0.0, codec_fraction: float = 0.0, video_share: float = 0.5):
        if not sources:
            raise DataError("SoftBlur needs at least one video or folder of stills")
        self.videos: list[tuple[str, np.ndarray]] = []
        self.stills: list[Path] = []
        for src in map(Path, sources):
            if src.is_dir():
                self.stills += list_images(src)
            else:
                frames = load_frames(src)
                (start, stop), _ = split_highfps(len(frames), max_window=max_window)
                # Keep runs of clip_len consecutive frames, ``every`` apart, from the training range only.
                keep = [i for i in range(start, stop - clip_len + 1, every)]
                if min(frames.shape[1:3]) < crop:
                    raise DataError(f"{src.name}: its frames are smaller than the {crop} px crop; use a smaller --crop")
                self.videos.append((src.name, np.ascontiguousarray(frames[[j for i in keep for j in range(i, i + clip_len)]])))
        # A still smaller than the crop would stop the run at the first sample drawn from it, maybe
        # hours in: it is left out now (``skipped``, for the caller to say), and its samples go to the rest.
        fits = {p: min(image_size(p)) >= crop for p in self.stills}
        self.skipped = [p for p in self.stills if not fits[p]]
        self.stills = [p for p in self.stills if fits[p]]
        if not self.videos and not self.stills:
            raise DataError(f"every still is smaller than the {crop} px crop; use a smaller --crop")
        self.n_sources = len(self.videos) + len(self.stills)
        self.crop, self.clip_len, self.seed, self.length = crop, clip_len, seed, length
        self.sharp_fraction, self.min_edge_energy, self.augment = sharp_fraction, min_edge_energy, augment
        self.upscaled_fraction, self.clean_fraction, self.codec_fraction = upscaled_fraction, clean_fraction, codec_fraction
        self.video_share = video_share
        self._decoded: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _image(self, source: int) -> np.ndarray:
        if source < len(self.videos):
            return self.videos[source][1]
        path = self.stills[source - len(self.videos)]
        if path not in self._decoded:
            self._decoded[path] = read_rgb(path)
        return self._decoded[path]

    def plan(self, index: int) -> SoftPlan:
        _check_index(index, self.length)
        rng = np.random.default_rng([self.seed, index])
        # A share of the samples (half unless told) from the video frames when there are both:
        # they are the domain.
        if self.videos and self.stills:
            source = int(rng.integers(len(self.videos))) if rng.random() < self.video_share else len(self.videos) + int(rng.integers(len(self.stills)))
        else:
            source = int(rng.integers(self.n_sources))
        img = self._image(source)
        if source < len(self.videos):
            frame = int(rng.integers(len(img) // self.clip_len)) * self.clip_len
            shrink, sigma, reference = 1.0, 0.0, img[frame]
        else:
            frame = 0
            shrink, sigma = draw_video_sharpness(rng, self.crop + 32, min(img.shape[:2]))  # the crop and its margin
            reference = cv2.resize(img, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA) if shrink < 1 else img
        box = choose_box(rng, reference, (self.crop, self.crop), self.augment, self.min_edge_energy)
        hflip, turns = choose_aug(rng, self.augment, True)
        steps = () if rng.random() < self.sharp_fraction else sample_steps(rng, self.upscaled_fraction, self.clean_fraction, self.codec_fraction)
        return SoftPlan(source, frame, shrink, sigma, box, hflip, turns, steps)

    def describe(self, source: int) -> str:
        return self.videos[source][0] if source < len(self.videos) else self.stills[source - len(self.videos)].name

    def render(self, plan: SoftPlan, index: int = 0) -> dict:
        img = self._image(plan.source)
        if plan.source < len(self.videos):
            clip = img[plan.frame : plan.frame + self.clip_len]
        else:
            clip = np.repeat(video_sharpness(img, plan.shrink, plan.target_sigma)[None], self.clip_len, axis=0)
        y, x, h, w = plan.box
        # Soften a margin around the crop too, so blur and scaling see real neighbours, not edges.
        m = 16
        top, left = max(0, y - m), max(0, x - m)
        region = clip[:, top : y + h + m, left : x + w + m]
        target = region[:, y - top : y - top + h, x - left : x - left + w]
        soft = degrade(region, plan.steps, np.random.default_rng([self.seed, index, 1]))[:, y - top : y - top + h, x - left : x - left + w] if plan.steps else target
        blur_clip, sharp_clip = apply_aug(soft, plan.hflip, plan.turns), apply_aug(target, plan.hflip, plan.turns)
        steps = ";".join(f"{s[0]}" + ",".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in s[1:]) for s in plan.steps) or "sharp"
        tag = f"soft:{self.describe(plan.source)}|t={plan.frame}|v={plan.shrink:.3f},{plan.target_sigma:.3f}|{_tag(plan.box, plan.hflip, plan.turns)}|{steps}"
        return to_sample(blur_clip, sharp_clip, tag)

    def __getitem__(self, index: int) -> dict:
        return self.render(self.plan(index), index)


# --- set 4: fixed softness recipes on sharp frames of unseen scenes -------------------------------

RECIPES: dict[str, tuple[Step, ...]] = {
    "gauss1.0+jpeg85": (("gauss", 1.0), ("jpeg", 85)),
    "gauss1.6": (("gauss", 1.6),),
    "disc2": (("disc", 2.0),),
    "upscaled0.5+jpeg80": (("resize", 0.5, "area", "cubic"), ("jpeg", 80)),
}

# The unsharp masks a user could pick by hand (amount, sigma); set 4 reports the best per recipe.
UNSHARP_GRID = [(a, s) for s in (0.7, 1.0, 1.5, 2.0) for a in (0.25, 0.5, 1.0, 1.5, 2.0)]


class SoftnessSet:
    """Set 4: each sharp frame softened by each of ``RECIPES`` (no noise: fixed, seedless).

    Items are ``{"blur", "sharp": (1, 3, H, W) float32, "source": "RECIPE/NAME", ...}``; the recipe
    is the part before the slash, which ``by_recipe`` groups on.
    """

    def __init__(self, folders: Sequence[str | Path], recipes: dict = RECIPES):
        self.paths = [p for f in folders for p in list_images(f)]
        if not self.paths:
            raise DataError(f"no sharp frames for set 4 in {', '.join(map(str, folders))}")
        self.recipes = recipes
        self.items = [(r, p) for r in recipes for p in self.paths]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        recipe, path = self.items[i]
        sharp = read_rgb(path)[None]
        return to_sample(degrade(sharp, self.recipes[recipe], np.random.default_rng(0)), sharp, f"{recipe}/{path.name}")


def by_recipe(results: dict) -> dict[str, dict[str, float]]:
    """{method: {recipe: mean gain (dB)}} from ``evaluate(..., per_item=True)`` on set 4."""
    base = results["input"]["items_detail"]
    out: dict[str, dict[str, float]] = {}
    for name, r in results.items():
        if "items_detail" not in r:
            continue
        gains: dict[str, list[float]] = {}
        for src, m in r["items_detail"].items():
            gains.setdefault(src.split("/", 1)[0], []).append(m["psnr"] - base[src]["psnr"])
        out[name] = {k: float(np.mean(v)) for k, v in gains.items()}
    return out

"""Synthetic blur on stills: convolution kernels (camera shake, linear motion, defocus, Gaussian),
then noise and JPEG. Every pixel is blurred alike; ``train.motion`` renders spatially varying
camera and object motion instead.

Samples follow ``train.data``'s format and are pure functions of (seed, index).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

from train.camera import jpeg
from train.data import Box, DataError, _check_index, _tag, apply_aug, choose_aug, choose_box, pad_to, read_rgb, to_sample
from train.gopro import GAMMA


# --- synthetic blur on stills ----------------------------------------------------------------


def rasterise(points: np.ndarray, size: int) -> np.ndarray:
    """Splat a (n, 2) trajectory of (x, y) pixel offsets into a (size, size) kernel summing to 1.

    Points are equally spaced in time, so a slow stretch of the path collects more weight,
    as the sensor does. The path is centred on its centroid: an off-centre kernel would shift
    the blurry image against its target, which a single-frame network cannot know to undo.
    Bilinear splatting keeps sub-pixel paths smooth.
    """
    pts = points - points.mean(axis=0) + (size - 1) / 2
    pts = np.clip(pts, 0, size - 1)
    kernel = np.zeros((size + 1, size + 1), np.float64)  # one spare row/column for the splat
    x0, y0 = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
    fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (y0 + dy, x0 + dx), wy * wx)
    kernel = kernel[:size, :size]
    return (kernel / kernel.sum()).astype(np.float32)


def shake_trajectory(rng: np.random.Generator, n: int = 64) -> np.ndarray:
    """A hand-shake path, (n, 2), unit-free: a random walk with inertia and a pull home.

    After Boracchi & Foi (2012): velocity keeps most of its direction, takes Gaussian kicks
    and is pulled back toward the start, which gives the curved, hooked paths of real shake.
    """
    pos, vel = np.zeros(2), rng.normal(size=2)
    path = []
    for _ in range(n):
        vel = 0.8 * vel + rng.normal(scale=0.5, size=2) - 0.05 * pos
        pos = pos + vel
        path.append(pos)
    return np.array(path)


def _fit(points: np.ndarray, size: int, extent: float) -> np.ndarray:
    """Scale a path about its centroid so its farthest point is ``extent`` of the kernel radius."""
    centred = points - points.mean(axis=0)
    radius = np.linalg.norm(centred, axis=1).max()
    return centred * (extent * (size - 1) / 2 / radius) if radius > 0 else centred


def _turn(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def motion_kernel(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random camera-shake kernel, (size, size) float32, non-negative, sums to 1.

    >>> float(motion_kernel(np.random.default_rng(0), 15).sum().round(4))
    1.0
    """
    return rasterise(_fit(shake_trajectory(rng), size, rng.uniform(0.5, 1.0)), size)


def linear_kernel(length: float, angle: float, size: int) -> np.ndarray:
    """A straight smear of ``length`` px at ``angle`` rad, (size, size), sums to 1."""
    t = np.linspace(-length / 2, length / 2, max(2, int(4 * length)))
    return rasterise(np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1), size)


def defocus_kernel(radius: float) -> np.ndarray:
    """A uniform disk of ``radius`` px (out-of-focus lens), (2*ceil(r)+1,)*2 float32, sums to 1.

    Edge pixels get their covered fraction (8x8 supersampling), so small radii stay round.
    """
    if radius <= 0:
        return np.ones((1, 1), np.float32)
    half = int(np.ceil(radius))
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    grid = np.arange(-half, half + 1)[:, None] + sub[None, :]  # (pixels, subsamples)
    inside = grid[:, None, :, None] ** 2 + grid[None, :, None, :] ** 2 <= radius**2
    kernel = inside.mean(axis=(2, 3))
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """An isotropic Gaussian, (2*ceil(3 sigma)+1,)*2 float32, sums to 1."""
    g = cv2.getGaussianKernel(2 * int(np.ceil(3 * sigma)) + 1, sigma).astype(np.float32)
    kernel = g @ g.T
    return kernel / kernel.sum()


def _soften(kernel: np.ndarray, sigma: float) -> np.ndarray:
    """Convolve a kernel with a small Gaussian (lens softness on top of motion)."""
    g = gaussian_kernel(sigma)
    r = g.shape[0] // 2
    out = cv2.filter2D(np.pad(kernel, r), -1, g, borderType=cv2.BORDER_CONSTANT)
    return out / out.sum()


@dataclass(frozen=True, eq=False)
class Degradation:
    """One clip's degradation: a blur kernel per frame, then noise, then JPEG."""

    kernels: tuple[np.ndarray, ...]  # (k, k) float32 each, sums to 1
    read_noise: float  # std of signal-independent noise, intensity units
    shot_noise: float  # variance per unit intensity (Poisson-like: var = shot * x)
    jpeg_quality: int | None  # None: no JPEG


def sample_degradation(rng: np.random.Generator, clip_len: int = 1) -> Degradation:
    """Draw a blur family and its parameters, drifting a little per frame, plus noise and JPEG.

    Blur: camera shake 50 %, linear motion 20 %, defocus 15 %, Gaussian 15 %, each at least
    a few px wide so every sample is visibly blurred; 30 % also get lens softness. Across a
    clip the kernel turns and grows or shrinks slowly, as a shaking hand would, so consecutive
    frames are consistent.
    """
    size = 2 * int(rng.integers(3, 16)) + 1  # 7..31
    kind = rng.choice(4, p=[0.5, 0.2, 0.15, 0.15])
    spin, grow = rng.uniform(-0.05, 0.05), rng.uniform(-0.03, 0.03)  # per frame
    ts = range(clip_len)
    if kind == 0:
        extent = rng.uniform(0.5, 1.0)
        path = _fit(shake_trajectory(rng), size, extent)
        kernels = [rasterise(_turn(path, spin * t) * min(1 + grow * t, 1 / extent), size) for t in ts]
    elif kind == 1:
        length, angle = rng.uniform(max(3.0, 0.3 * (size - 1)), size - 1), rng.uniform(0, np.pi)
        kernels = [linear_kernel(min(length * (1 + grow * t), size - 1), angle + spin * t, size) for t in ts]
    elif kind == 2:
        radius = rng.uniform(1.5, max(1.5, (size - 1) / 2))
        kernels = [defocus_kernel(max(1.0, radius * (1 + grow * t))) for t in ts]
    else:
        sigma = rng.uniform(1.0, max(1.0, size / 6))
        kernels = [gaussian_kernel(max(0.5, sigma * (1 + grow * t))) for t in ts]
    if rng.random() < 0.3:
        soft = rng.uniform(0.3, 0.8)
        kernels = [_soften(k, soft) for k in kernels]
    read = rng.uniform(0, 0.02) if rng.random() < 0.7 else 0.0
    shot = rng.uniform(0, 0.003) if rng.random() < 0.5 else 0.0
    quality = int(rng.integers(40, 96)) if rng.random() < 0.5 else None
    return Degradation(tuple(kernels), read, shot, quality)


def blur_image(img: np.ndarray, kernel: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """(H, W, 3) float in [0, 1] blurred by ``kernel`` in linear light -> float32, same shape."""
    linear = np.power(img.astype(np.float32), gamma)
    out = cv2.filter2D(linear, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return np.clip(out, 0, 1) ** (1 / gamma)


def finish(img: np.ndarray, deg: Degradation, rng: np.random.Generator) -> np.ndarray:
    """Add sensor noise, round to 8 bits, JPEG-compress: (H, W, 3) float -> uint8."""
    if deg.read_noise or deg.shot_noise:
        sigma = np.sqrt(deg.read_noise**2 + deg.shot_noise * np.clip(img, 0, 1))
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return jpeg(u8, deg.jpeg_quality) if deg.jpeg_quality is not None else u8


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random blur + noise + JPEG of one image, (H, W, 3) uint8 or float [0, 1] -> float32.

    >>> out = degrade(np.zeros((32, 32, 3), np.float32), np.random.default_rng(0))
    >>> out.shape, out.dtype
    ((32, 32, 3), dtype('float32'))
    """
    x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    deg = sample_degradation(rng)
    return finish(blur_image(x, deg.kernels[0]), deg, rng).astype(np.float32) / 255



@dataclass(frozen=True, eq=False)
class SynthPlan:
    """All the randomness of one SyntheticBlur sample."""

    path: Path
    index: int
    region: Box  # (y, x, h, w) in the padded image: every window of the clip plus margin
    size: tuple[int, int]  # (h, w) of each output frame
    offsets: tuple[tuple[int, int], ...]  # (dy, dx) of each frame's window inside region
    degradation: Degradation
    noise_seed: int
    hflip: bool
    k: int


class SyntheticBlur(Dataset):
    """Stills blurred by ``sample_degradation``: content diversity the GoPro clips lack.

    Index i uses file ``paths[i % len(paths)]``; ``length`` defaults to one sample per file.
    A clip (clip_len > 1) is a crop window sliding up to ``max_shift`` px per frame over the
    still, each frame blurred by its slowly drifting kernel, with fresh noise per frame.
    augment False: centre crops (whole images if crop is None), for repeatable validation;
    the degradation is still drawn from rng(seed, index).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        crop: int | None = 256,
        clip_len: int = 1,
        augment: bool = True,
        seed: int = 0,
        length: int | None = None,
        max_shift: float = 3.0,
        min_edge_energy: float = 0.0,
    ):
        if not paths:
            raise DataError("SyntheticBlur got no image paths; see list_images()")
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        self.paths = [Path(p) for p in paths]
        self.crop, self.clip_len, self.augment, self.seed = crop, clip_len, augment, seed
        self.length, self.max_shift, self.min_edge_energy = length or len(self.paths), max_shift, min_edge_energy

    def __len__(self) -> int:
        return self.length

    def plan(self, index: int, img: np.ndarray | None = None) -> SynthPlan:
        """Draw sample ``index``'s degradation, window path, crop and flips from rng(seed, index).

        img: the still, if already read, (H, W, 3) uint8.
        """
        _check_index(index, self.length)
        rng = np.random.default_rng([self.seed, index])
        path = self.paths[index % len(self.paths)]
        img = read_rgb(path) if img is None else img
        deg = sample_degradation(rng, self.clip_len)
        h, w = img.shape[:2] if self.crop is None else (self.crop, self.crop)
        speed = rng.uniform(-self.max_shift, self.max_shift, size=2) if self.clip_len > 1 else np.zeros(2)
        moves = [(round(speed[0] * t), round(speed[1] * t)) for t in range(self.clip_len)]
        margin = max(k.shape[0] for k in deg.kernels) // 2 + 1  # blur reads this far outside
        low = [min(m[i] for m in moves) for i in (0, 1)]
        offsets = tuple((dy - low[0] + margin, dx - low[1] + margin) for dy, dx in moves)
        need = (
            h + max(m[0] for m in moves) - low[0] + 2 * margin,
            w + max(m[1] for m in moves) - low[1] + 2 * margin,
        )
        region = choose_box(rng, pad_to(img, *need), need, self.augment, self.min_edge_energy)
        hflip, k = choose_aug(rng, self.augment, h == w)
        return SynthPlan(path, index, region, (h, w), offsets, deg, int(rng.integers(2**63)), hflip, k)

    def render(self, plan: SynthPlan, img: np.ndarray | None = None) -> dict:
        """The sample a plan describes (pure given the still)."""
        img = read_rgb(plan.path) if img is None else img
        y, x, rh, rw = plan.region
        region = pad_to(img, rh, rw)[y : y + rh, x : x + rw]
        floats = region.astype(np.float32) / 255
        (h, w), deg = plan.size, plan.degradation
        margin = max(k.shape[0] for k in deg.kernels) // 2 + 1
        noise = np.random.default_rng(plan.noise_seed)
        sharp, blur = [], []
        for (dy, dx), kernel in zip(plan.offsets, deg.kernels):
            # Blur a margin-wider window, then cut the frame out: no border artefacts inside.
            wide = floats[dy - margin : dy + h + margin, dx - margin : dx + w + margin]
            blurred = blur_image(wide, kernel)[margin : margin + h, margin : margin + w]
            blur.append(finish(blurred, deg, noise))
            sharp.append(region[dy : dy + h, dx : dx + w])
        source = (
            f"synthetic:{plan.path.parent.name}/{plan.path.name}|seed={self.seed}|index={plan.index}"
            f"|T={len(plan.offsets)}|{_tag(plan.region, plan.hflip, plan.k)}"
        )
        return to_sample(
            apply_aug(np.stack(blur), plan.hflip, plan.k), apply_aug(np.stack(sharp), plan.hflip, plan.k), source
        )

    def __getitem__(self, index: int) -> dict:
        img = read_rgb(self.paths[index % len(self.paths)]) if 0 <= index < self.length else None
        return self.render(self.plan(index, img), img)

"""Motion blur rendered on stills: the camera (and sometimes one object) moves during the exposure.

A convolution kernel blurs every pixel alike; real footage does not. A hand-held camera also
turns a little (blur grows away from the centre of rotation), and a person walking through the
frame moves against the background (blur differs inside and outside them, with a soft, moving
boundary). Both are rendered here the way the GoPro dataset makes blur from 240 fps video:
``n`` sub-frames along a smooth random path, each an affine warp of the scene, averaged in
light (``train.camera``); the middle sub-frame is the target. The first lever that moved real,
unseen GoPro scenes at all (``../shared/notes/cpu_budget.md``: +0.00 -> +0.23 dB, and far less
damage to sharp frames) was camera paths on stills; object motion, clipped highlights, the
camera's noise and codec are the next ones, each measured on ``gopro_real_pairs_val/``.

Samples are pure functions of (seed, index), like every training source (``train.data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

from train import camera as cam_
from train.data import Box, DataError, _check_index, _tag, apply_aug, choose_aug, choose_box, pad_to, read_rgb, to_sample
from train.soft import draw_video_sharpness, video_sharpness

# Blur strength classes: (share of samples, extent range in px of one exposure's path)
SHARP, MILD, STRONG = "sharp", "mild", "strong"
STRENGTHS = {SHARP: (0.10, (0.0, 0.0)), MILD: (0.25, (1.0, 5.0)), STRONG: (0.65, (4.0, 26.0))}


def with_sharp_share(share: float, strengths: dict = STRENGTHS) -> dict:
    """``strengths`` with the sharp -> sharp class at ``share``, the blurred classes keeping their ratio."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"sharp share must be in [0, 1), got {share}")
    rest = sum(p for name, (p, _) in strengths.items() if name != SHARP)
    return {name: (share if name == SHARP else p * (1 - share) / rest, ext) for name, (p, ext) in strengths.items()}


def with_strong_extent(lo: float, hi: float, strengths: dict = STRENGTHS) -> dict:
    """``strengths`` with the strong class's extents in [``lo``, ``hi``] px, its share kept."""
    return strengths | {STRONG: (strengths[STRONG][0], (float(lo), float(hi)))}


@dataclass(frozen=True, eq=False)
class MotionPlan:
    """All the randomness of one TrajectoryBlur sample."""

    path: Path
    index: int
    strength: str
    n: int  # sub-frames per exposure (odd); 1 = sharp -> sharp; the target is the exposure's mean position
    region: Box  # (y, x, h, w) of the padded still the clip is rendered from
    camera_moves: np.ndarray  # (T, n, 2, 3) affine matrices of the scene for every sub-frame
    object_box: Box | None  # where the moving object's texture comes from (same still)
    object_moves: np.ndarray | None  # (T, n, 2, 3) affine matrices of the object, composed after the camera's
    object_mask: np.ndarray | None  # (h, w) float32 alpha of the object in its own frame
    camera: cam_.Camera
    noise_seed: int
    hflip: bool
    k: int
    shrink: float = 1.0  # the still -> a video frame's sharpness: the region is resized by this...
    target_sigma: float = 0.0  # ...and softened by this Gaussian before any motion (1 and 0: the crisp still)
    depth: np.ndarray | None = None  # (crop, crop) float32: how much of the camera's move each pixel makes (parallax, ``depth_field``); None: all of it


def smooth_path(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) points of a smooth random walk (inertia plus Gaussian kicks), unit-free.

    Strong inertia: within one exposure (1/50-1/25 s) a hand or a walking camera mostly moves
    along a gentle curve, as the GoPro clips do; kicks bend it and change its speed.
    """
    pos, vel = np.zeros(2), rng.normal(size=2)
    pts = []
    for _ in range(n):
        vel = 0.95 * vel + rng.normal(scale=0.15, size=2)
        pos = pos + vel
        pts.append(pos.copy())
    return np.array(pts)


def exposure_moves(rng: np.random.Generator, clip_len: int, n: int, extent: float, centre: tuple[float, float],
                   max_turn: float, max_zoom: float) -> np.ndarray:
    """(T, n, 2, 3) affine matrices along one continuous path through T back-to-back exposures.

    Each exposure is centred on the mean of its path, and the target is the scene at that mean
    position: an integer translation (no rotation, no zoom), so every target is an exact crop of
    the still, never an interpolated (softened) one. Centring on the mean, not on the middle
    sub-frame, matters: on a curved or accelerating path the middle sub-frame lies pixels away
    from the blur's centre, in a direction a single blurry frame cannot show, so the network
    could only learn to smear (the same reason ``train.synthetic.rasterise`` centres kernels on
    their centroid). The sub-frames move up to ``extent`` px (the path's longest chord in one
    exposure), turn by up to ``max_turn`` rad and zoom by up to ``max_zoom`` about ``centre``.
    """
    total = clip_len * n
    pts = smooth_path(rng, total)
    turn = rng.uniform(-max_turn, max_turn) / max(1, n - 1)  # per sub-frame
    zoom = rng.uniform(-max_zoom, max_zoom) / max(1, n - 1)
    mats = np.zeros((clip_len, n, 2, 3), np.float64)
    for t in range(clip_len):
        seg = pts[t * n : (t + 1) * n]
        chord = max(np.linalg.norm(seg[:, None] - seg[None], axis=2).max(), 1e-9)
        mid = seg.mean(axis=0)
        scale = extent / chord if n > 1 else 0.0
        # The exposure's centre sits where the path has moved it since the first, in whole pixels.
        base = np.round((mid - pts[:n].mean(axis=0)) * scale) if t else np.zeros(2)
        for i in range(n):
            d = (seg[i] - mid) * scale + base
            a, z = turn * (i - n // 2), 1 + zoom * (i - n // 2)
            c, s = np.cos(a) * z, np.sin(a) * z
            cx, cy = centre
            # x' = R z (x - centre) + centre + d
            mats[t, i] = [[c, -s, cx - c * cx + s * cy + d[0]], [s, c, cy - s * cx - c * cy + d[1]]]
    return mats


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``a`` applied after ``b``."""
    a3, b3 = np.vstack([a, [0, 0, 1]]), np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def depth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float32 in (0, 2], mean 1: how far each pixel moves when the camera does.

    A camera that moves through a scene (set 1's scenes: streets, trees, cars) blurs what is
    near more than what is far, in proportion to inverse depth; a still moved as one plane
    blurs every pixel alike. The field is a smooth random surface with a ramp (ground that
    comes nearer towards one side) and, in half of the fields, the softened edge of something
    in front (a trunk, a car) that moves with the full path while what is behind it moves less.
    The nearest moves 1.4-6.7 times as far as the farthest, and the mean is 1 (capped at 2), so
    a crop's blur keeps its strength class's extent on average.
    """
    far = float(rng.uniform(0.15, 0.7))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.uniform(0, 2 * np.pi)
    field = np.cos(a) * x + np.sin(a) * y
    field = field + cv2.resize(rng.random((4, 4)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        b, c = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.75)
        front = ((np.cos(b) * (x - c) + np.sin(b) * (y - c)) > 0).astype(np.float32)
        field = field + 4 * cv2.GaussianBlur(front, (0, 0), float(rng.uniform(0.5, 2.0)))
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    field = far + (1 - far) * field
    return np.minimum(field / field.mean(), 2.0).astype(np.float32)


def object_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A soft random ellipse, (h, w) float32 in [0, 1]: a moving person or thing."""
    mask = np.zeros((h, w), np.float32)
    centre = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.7) * h))
    axes = (int(rng.uniform(0.15, 0.4) * w), int(rng.uniform(0.15, 0.4) * h))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), float(rng.uniform(0.7, 2.0)))


class TrajectoryBlur(Dataset):
    """Stills blurred by rendered camera motion (and, in ``object_prob`` of samples, an object's).

    A sample is ``clip_len`` back-to-back exposures of ``n`` sub-frames each: (T, 3, crop,
    crop) blurry frames from ``train.camera.finish`` and their sharp middle sub-frames.
    ``strengths`` maps a class to (share, (min, max) extent px); the sharp class has n = 1, so
    its input is the target plus only the camera's noise and codec: it teaches the network to
    leave sharp video alone.
    """

    def __init__(self, paths: Sequence[str | Path], crop: int = 128, clip_len: int = 1, seed: int = 0,
                 length: int | None = None, augment: bool = True, min_edge_energy: float = 0.0,
                 object_prob: float = 0.35, strengths: dict | None = None, camera: bool = True,
                 linear_fraction: float = 0.4, video_sharp: bool = False, depth_prob: float = 0.0):
        if not paths:
            raise DataError("TrajectoryBlur got no image paths; see list_images()")
        if clip_len < 1 or crop < 16 or crop % 2:
            raise ValueError(f"clip_len must be >= 1 and crop even and >= 16, got {clip_len}, {crop}")
        self.paths = [Path(p) for p in paths]
        self.crop, self.clip_len, self.seed, self.augment = crop, clip_len, seed, augment
        self.length, self.min_edge_energy, self.object_prob = length or len(self.paths), min_edge_energy, object_prob
        self.strengths = strengths or STRENGTHS
        self.camera, self.linear_fraction, self.video_sharp = camera, linear_fraction, video_sharp
        self.depth_prob = depth_prob  # share of blurred samples whose scene has depth (``depth_field``)
        self._decoded: dict[Path, np.ndarray] = {}  # per process; big stills take ~100 ms to decode
        self.max_extent = max(hi for _, (_, hi) in self.strengths.values())
        # Room around the crop for everything a sub-frame can pull in: the path, the motion
        # between exposures, rotation and zoom at the corners.
        # (With depth, a near pixel may move up to twice as far; at the longest paths, at a crop's
        # edge, it then reads a little of the margin's reflection, rarely enough to leave alone.)
        self.margin = int(np.ceil(self.max_extent * (1.5 * clip_len - 1) + 0.03 * crop)) + 4

    def __len__(self) -> int:
        return self.length

    def plan(self, index: int, img: np.ndarray | None = None) -> MotionPlan:
        _check_index(index, self.length)
        rng = np.random.default_rng([self.seed, index])
        path = self.paths[index % len(self.paths)]
        img = read_rgb(path) if img is None else img
        names = list(self.strengths)
        shares = np.array([self.strengths[s][0] for s in names], np.float64)
        strength = names[int(rng.choice(len(names), p=shares / shares.sum()))]
        lo, hi = self.strengths[strength][1]
        extent = float(rng.uniform(lo, hi))
        side = self.crop + 2 * self.margin
        shrink, sigma = 1.0, 0.0
        if self.video_sharp:  # as train.soft makes its still targets
            shrink, sigma = draw_video_sharpness(rng, side, min(img.shape[:2]))
        # the region is cut at the still's own scale and resized to ``side`` when rendered
        cut = int(np.ceil(side / shrink))
        # Enough sub-frames that copies sit at most ~2.5 px apart (GoPro's 7-13 frames leave
        # ghosts too on fast motion, but a continuous exposure has none).
        n = 1 if hi <= 0 else 2 * int(np.clip(extent / 5 + rng.uniform(0, 2), 1, 8)) + 1
        padded = pad_to(img, cut, cut)
        region = choose_box(rng, padded, (cut, cut), self.augment, self.min_edge_energy)
        centre = (float(rng.uniform(0, side)), float(rng.uniform(0, side)))
        moves = exposure_moves(rng, self.clip_len, n, extent, centre, max_turn=np.deg2rad(1.5), max_zoom=0.02)
        obox = omoves = omask = None
        if n > 1 and rng.random() < self.object_prob:
            obox = choose_box(rng, padded, (cut, cut), True)
            omoves = exposure_moves(rng, self.clip_len, n, float(rng.uniform(2.0, self.max_extent)), (side / 2, side / 2), np.deg2rad(3), 0.03)
            omask = object_mask(rng, side, side)
        camera = cam_.sample_camera(rng, self.linear_fraction) if self.camera else cam_.CLEAN
        hflip, k = choose_aug(rng, self.augment, True)
        # drawn apart from the rest, so a sample's other choices are those it has without depth
        deep = np.random.default_rng([self.seed, index, 1])
        depth = depth_field(deep, self.crop) if n > 1 and deep.random() < self.depth_prob else None
        return MotionPlan(path, index, strength, n, region, moves, obox, omoves, omask, camera, int(rng.integers(2**63)), hflip, k, shrink, sigma, depth)

    def render(self, plan: MotionPlan, img: np.ndarray | None = None) -> dict:
        img = read_rgb(plan.path) if img is None else img
        side = self.crop + 2 * self.margin
        padded = pad_to(img, *plan.region[2:])

        def cut(box: Box) -> np.ndarray:
            y, x, h, w = box
            region = padded[y : y + h, x : x + w]
            if plan.target_sigma > 0:
                region = video_sharpness(cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA), 1.0, plan.target_sigma)
            return cam_.to_linear(region, plan.camera)

        scene = cut(plan.region)
        thing = cut(plan.object_box) if plan.object_box is not None else None

        m = self.margin
        shift = np.array([[1.0, 0.0, -m], [0.0, 1.0, -m]])  # into the crop's frame

        def warp(src: np.ndarray, mat: np.ndarray, size: int) -> np.ndarray:
            return cv2.warpAffine(src, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

        if plan.depth is not None:  # every crop pixel's (x, y, 1), for the depth path's remap
            grid = np.stack([*np.mgrid[0 : self.crop, 0 : self.crop][::-1], np.ones((self.crop, self.crop))]).reshape(3, -1)

        def read_from(mat: np.ndarray) -> np.ndarray:
            """(2, crop * crop) where each crop pixel is read from the scene under the affine ``mat``."""
            return cv2.invertAffineTransform(mat) @ grid

        def look(camera: np.ndarray, obj: np.ndarray | None, rest: np.ndarray | None = None) -> np.ndarray:
            """The crop seen through one camera transform, with the object moved by ``obj`` on top.
            With a depth field, each pixel moves that share of the way from where the camera is at
            rest (``rest``, the exposure's mean position) to where ``camera`` puts it.
            Only the crop is rendered: each warp writes crop x crop pixels, not the region."""
            mat = compose(shift, camera)
            if plan.depth is None or rest is None:
                frame = warp(scene, mat, self.crop)
            else:
                at_rest = read_from(compose(shift, rest))
                where = (at_rest + plan.depth.reshape(1, -1) * (read_from(mat) - at_rest)).astype(np.float32).reshape(2, self.crop, self.crop)
                frame = cv2.remap(scene, where[0], where[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            if thing is not None:
                mo = compose(mat, obj)
                alpha = warp(plan.object_mask, mo, self.crop)[..., None]
                frame = alpha * warp(thing, mo, self.crop) + (1 - alpha) * frame
            return frame

        def mean_position(mats: np.ndarray) -> np.ndarray:
            """The whole-pixel translation at the mean of an exposure's (n, 2, 3) transforms."""
            return np.array([[1.0, 0.0, np.round(mats[:, 0, 2].mean())], [0.0, 1.0, np.round(mats[:, 1, 2].mean())]])

        def objects(t: int):
            return plan.object_moves[t] if thing is not None else [None] * plan.n

        blurry, sharp = [], []
        for t in range(self.clip_len):
            rest = mean_position(plan.camera_moves[t])
            blurry.append(sum(look(c, o, rest) for c, o in zip(plan.camera_moves[t], objects(t))) / plan.n)
            # the target: the scene (and object) at the exposure's mean position
            sharp.append(look(mean_position(plan.camera_moves[t]), mean_position(plan.object_moves[t]) if thing is not None else None))
        blurry, sharp = np.stack(blurry), np.stack(sharp)
        out = cam_.finish(blurry, plan.camera, np.random.default_rng(plan.noise_seed))
        source = (
            f"motion:{plan.path.parent.name}/{plan.path.name}|seed={self.seed}|index={plan.index}|{plan.strength}"
            f"|n={plan.n}{'|depth' if plan.depth is not None else ''}|T={self.clip_len}{f'|v={plan.shrink:.3f},{plan.target_sigma:.3f}' if plan.target_sigma else ''}|obj={int(plan.object_box is not None)}|{cam_.tag(plan.camera)}|{_tag(plan.region, plan.hflip, plan.k)}"
        )
        return to_sample(apply_aug(out, plan.hflip, plan.k), apply_aug(cam_.target(sharp, plan.camera), plan.hflip, plan.k), source)

    def still(self, path: Path) -> np.ndarray:
        if path not in self._decoded:
            self._decoded[path] = read_rgb(path)
        return self._decoded[path]

    def __getitem__(self, index: int) -> dict:
        img = self.still(self.paths[index % len(self.paths)]) if 0 <= index < self.length else None
        return self.render(self.plan(index, img), img)

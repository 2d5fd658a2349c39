"""GoPro data: GOPRO_Large pairs, and the GoPro blur recipe on any high-frame-rate video.

Samples follow ``train.data``'s format and are pure functions of (seed, index).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from train import camera as cam_
from train.data import IMAGE_SUFFIXES, Box, DataError, _check_index, _tag, apply_aug, choose_aug, choose_box, crop_clip, load_frames, read_rgb, to_sample

GAMMA = 2.2  # the sRGB-like encoding the GoPro recipe assumes


# --- GoPro pairs -------------------------------------------------------------------------


def _frame_number(name: str) -> int | None:
    match = re.search(r"(\d+)$", Path(name).stem)
    return int(match.group(1)) if match else None


def _frame_order(name: str) -> tuple[int, str]:
    number = _frame_number(name)
    return (-1 if number is None else number, name)  # numerically: 10.png after 9.png


def _runs(names: list[str]) -> list[list[str]]:
    """Split sorted frame names into runs of consecutive frame numbers (gaps end a run)."""
    runs = [[names[0]]]
    for prev, name in zip(names, names[1:]):
        a, b = _frame_number(prev), _frame_number(name)
        if a is not None and b is not None and b != a + 1:
            runs.append([])
        runs[-1].append(name)
    return runs


def index_gopro(root: str | Path, split: str, blur: str, clip_len: int) -> list[tuple[Path, tuple[str, ...]]]:
    """All clips of ``clip_len`` consecutive frames: [(sequence folder, frame names)].

    Raises DataError for a missing or empty root, and for any blurry frame without its sharp
    partner (or the reverse), naming the missing file.
    """
    split_dir = Path(root) / split
    sequences = sorted(p for p in split_dir.glob("*") if p.is_dir()) if split_dir.is_dir() else []
    if not sequences:
        raise DataError(
            f"no GoPro sequences in {split_dir}; fix: download GOPRO_Large and pass the folder "
            f"that holds train/ and test/ (expects {split}/GOPRxxxx_xx_xx/{{{blur},sharp}}/*.png)"
        )
    clips = []
    for seq in sequences:
        names = {}
        for kind in (blur, "sharp"):
            if not (seq / kind).is_dir():
                raise DataError(f"missing folder {seq / kind}")
            names[kind] = {p.name for p in (seq / kind).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        for kind, other in ((blur, "sharp"), ("sharp", blur)):
            orphans = sorted(names[kind] - names[other])
            if orphans:
                name = orphans[0]
                raise DataError(f"missing {other} partner {seq / other / name} of {seq / kind / name}")
        ordered = sorted(names["sharp"], key=_frame_order)
        if not ordered:
            raise DataError(f"no frames in {seq / 'sharp'}")
        for run in _runs(ordered):
            clips += [(seq, tuple(run[i : i + clip_len])) for i in range(len(run) - clip_len + 1)]
    return clips


class GoProPairs(Dataset):
    """GOPRO_Large pairs: ``root/{train,test}/GOPRxxxx_xx_xx/{blur,blur_gamma,sharp}/*.png``.

    A sample is ``clip_len`` consecutive frames of one sequence, cropped (random, or centre
    when ``augment`` is False, or whole when ``crop`` is None) and flipped/turned alike.
    ``length`` (default: the number of clips) wraps indices over the clips, so a longer
    virtual epoch draws more crops per clip.

    >>> GoProPairs("/data/GOPRO_Large", "test", augment=False, crop=None)[0]["blur"].shape  # doctest: +SKIP
    torch.Size([1, 3, 720, 1280])
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        blur: str = "blur",
        clip_len: int = 1,
        crop: int | None = 256,
        augment: bool = True,
        seed: int = 0,
        min_edge_energy: float = 0.0,
        length: int | None = None,
    ):
        if split not in ("train", "test") or blur not in ("blur", "blur_gamma"):
            raise ValueError(f"split must be train|test and blur blur|blur_gamma, got {split!r}, {blur!r}")
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        self.split, self.blur, self.crop, self.augment = split, blur, crop, augment
        self.seed, self.min_edge_energy = seed, min_edge_energy
        self.clips = index_gopro(root, split, blur, clip_len)
        if not self.clips:
            raise DataError(f"no sequence in {Path(root) / split} has {clip_len} consecutive frames")
        self.length = length or len(self.clips)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        _check_index(index, self.length)
        rng = np.random.default_rng([self.seed, index])
        seq, names = self.clips[index % len(self.clips)]
        sharp = np.stack([read_rgb(seq / "sharp" / n) for n in names])
        blur = np.stack([read_rgb(seq / self.blur / n) for n in names])
        if blur.shape != sharp.shape:
            raise DataError(f"{seq / self.blur / names[0]} and its sharp partner differ in size")
        size = None if self.crop is None else (self.crop, self.crop)
        box = choose_box(rng, sharp[0], size, self.augment, self.min_edge_energy)
        hflip, k = choose_aug(rng, self.augment, box[2] == box[3])
        source = f"gopro:{self.split}/{seq.name}/{self.blur}/{names[0]}+{len(names)}|{_tag(box, hflip, k)}"
        return to_sample(
            apply_aug(crop_clip(blur, box), hflip, k), apply_aug(crop_clip(sharp, box), hflip, k), source
        )


# --- the GoPro recipe on high-frame-rate video ---------------------------------------------


def gopro_blur(frames: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """Average (N, H, W, 3) uint8 sharp frames in linear light -> (H, W, 3) uint8 blurry frame.

    Light adds up linearly on the sensor during the exposure; averaging gamma-encoded values
    instead would darken bright streaks. The result is rounded to 8 bits like a camera frame.
    """
    lut = ((np.arange(256) / 255.0) ** gamma).astype(np.float32)
    linear = sum(lut[f] for f in frames) / len(frames)  # one frame at a time: bounded memory
    return np.round(np.clip(linear, 0, 1) ** (1 / gamma) * 255).astype(np.uint8)


def split_highfps(
    n_frames: int, val_fraction: float = 0.2, max_window: int = 13
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(train_range, val_range) as (start, stop) frame ranges, validation at the end.

    A sample's window never leaves its range, so the ranges alone keep frames apart; the gap
    of ``max_window`` unused frames also keeps val content from being a 1/240 s neighbour of
    a train frame.

    >>> split_highfps(299)
    ((0, 226), (239, 299))
    """
    n_val = max(max_window, round(n_frames * val_fraction))
    train_stop = n_frames - n_val - max_window
    if train_stop < max_window:
        raise DataError(f"{n_frames} frames are too few to split with windows of {max_window}")
    return (0, train_stop), (n_frames - n_val, n_frames)


@dataclass(frozen=True)
class HighFpsPlan:
    """All the randomness of one HighFpsBlur sample."""

    centres: tuple[int, ...]  # centre (= target) frame of each clip frame
    n: int  # sharp frames averaged per blurry frame, odd
    box: Box
    hflip: bool
    k: int
    camera: "cam_.Camera | None" = None  # None: the plain GoPro recipe at ``gamma``, no noise or codec
    noise_seed: int = 0


class HighFpsBlur(Dataset):
    """The GoPro recipe: blurry frame = linear-light mean of N sharp frames, target = centre.

    source: a video file, a folder of frames, or an (F, H, W, 3) uint8 array from
    ``load_frames`` (share one array between the train and val sets; then ``name`` should
    say what it holds, scale included, as it keys the teacher cache). N is odd, drawn from
    ``window`` per sample. A clip's frames share N; their centres step by ``stride`` (None:
    by N, i.e. back-to-back exposures like a camera whose shutter stays open all frame, so
    motion between frames is real video motion; 1 gives near-duplicate frames).
    ``frame_range`` (start, stop) bounds every frame a sample touches.

    augment True: ``length`` random samples (random centre, crop, flips). augment False:
    centres enumerated every ``every`` frames (default: the largest N) and a centre crop, or
    the whole frame when crop is None, for repeatable validation.

    ``camera`` True (training): each sample draws a ``train.camera.Camera`` (tone curve,
    saturated highlights, noise, codec) instead of the fixed ``gamma``; ``sharp_fraction`` of
    samples then average a single frame (N = 1): sharp input with only the camera's noise and
    codec, which teaches the network to leave sharp footage alone.
    """

    def __init__(
        self,
        source: str | Path | np.ndarray,
        window: tuple[int, int] = (7, 13),
        clip_len: int = 1,
        frame_range: tuple[int, int] | None = None,
        crop: int | None = 256,
        augment: bool = True,
        seed: int = 0,
        stride: int | None = None,
        every: int | None = None,
        length: int = 1000,
        scale: float = 1.0,
        min_edge_energy: float = 0.0,
        gamma: float = GAMMA,
        name: str | None = None,
        camera: bool = False,
        sharp_fraction: float = 0.0,
        linear_fraction: float = 0.4,
    ):
        lo, hi = window
        if not (1 <= lo <= hi and lo % 2 == 1 and hi % 2 == 1):
            raise ValueError(f"window must be two odd numbers lo <= hi, got {window}")
        if clip_len < 1 or (stride is not None and stride < 1):
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
        if isinstance(source, np.ndarray):
            if scale != 1.0:
                raise ValueError("scale applies when loading; resize the array yourself")
            self.frames, self.name = source, name or "frames"
        else:
            suffix = "" if scale == 1.0 else f"@{scale:g}x"
            self.frames, self.name = load_frames(source, scale), name or Path(source).name + suffix
        start, stop = frame_range or (0, len(self.frames))
        if not 0 <= start < stop <= len(self.frames):
            raise DataError(f"frame_range {frame_range} is outside the {len(self.frames)} frames")
        self.ns = tuple(range(lo, hi + 1, 2))
        self.clip_len, self.start, self.stop, self.stride = clip_len, start, stop, stride
        self.crop, self.augment, self.seed = crop, augment, seed
        self.min_edge_energy, self.gamma = min_edge_energy, gamma
        self.camera, self.sharp_fraction, self.linear_fraction = camera, sharp_fraction, linear_fraction
        # The longest N needs the most room, whatever the stride.
        room = stop - start - (clip_len - 1) * (stride or hi) - hi
        if room < 0:
            raise DataError(f"frames {start}..{stop} cannot hold {clip_len} blurry frames of {hi}")
        self.every = every or hi
        self.length = length if augment else room // self.every + 1

    def __len__(self) -> int:
        return self.length

    def plan(self, index: int) -> HighFpsPlan:
        """Draw sample ``index``'s frames, crop and flips from rng(seed, index)."""
        _check_index(index, self.length)
        rng = np.random.default_rng([self.seed, index])
        n = int(rng.choice(self.ns))
        step = self.stride or n  # drawn before the sharp choice, so clips keep their spacing
        if self.augment and self.camera and rng.random() < self.sharp_fraction:
            n = 1
        if self.augment:
            first = int(rng.integers(self.start + n // 2, self.stop - n // 2 - (self.clip_len - 1) * step))
        else:  # room was counted for the longest N, so every N fits here
            first = self.start + self.ns[-1] // 2 + index * self.every
        size = None if self.crop is None else (self.crop, self.crop)
        box = choose_box(rng, self.frames[first], size, self.augment, self.min_edge_energy)
        hflip, k = choose_aug(rng, self.augment, box[2] == box[3])
        centres = tuple(first + t * step for t in range(self.clip_len))
        if not self.camera:
            return HighFpsPlan(centres, n, box, hflip, k)
        return HighFpsPlan(centres, n, box, hflip, k, cam_.sample_camera(rng, self.linear_fraction), int(rng.integers(2**63)))

    def render(self, plan: HighFpsPlan) -> dict:
        """The sample a plan describes (pure given the frames)."""
        h = plan.n // 2
        sharp = crop_clip(self.frames[list(plan.centres)], plan.box)
        # Crop before averaging: N crops cost far less than N full frames.
        windows = [crop_clip(self.frames[c - h : c + h + 1], plan.box) for c in plan.centres]
        step = plan.centres[1] - plan.centres[0] if len(plan.centres) > 1 else 0
        if plan.camera is None:
            blur = np.stack([gopro_blur(w, self.gamma) for w in windows])
            light = f"gamma={self.gamma:g}"
        else:
            cam = plan.camera
            exposures = np.stack([sum(cam_.to_linear(f, cam) for f in w) / len(w) for w in windows])
            blur = cam_.finish(exposures, cam, np.random.default_rng(plan.noise_seed))
            sharp = cam_.target(cam_.to_linear(sharp, cam), cam)
            light = cam_.tag(cam)
        source = (
            f"highfps:{self.name}|{light}|n={plan.n}|centres={plan.centres[0]}+{step}"
            f"x{len(plan.centres)}|{_tag(plan.box, plan.hflip, plan.k)}"
        )
        return to_sample(apply_aug(blur, plan.hflip, plan.k), apply_aug(sharp, plan.hflip, plan.k), source)

    def __getitem__(self, index: int) -> dict:
        return self.render(self.plan(index))

"""Training data: what every source shares (files, crops, flips, the sample format), and real
footage with no ground truth. The sources live beside it:

- ``train.gopro``: GOPRO_Large pairs, and the GoPro blur recipe on any 240 fps video;
- ``train.synthetic``: blur kernels (shake, linear, defocus, Gaussian) and noise/JPEG on stills;
- ``train.motion``: camera and object motion rendered on stills, through ``train.camera``.

Every dataset returns a dict::

    {"blur": (T, 3, H, W) float32, "sharp": (T, 3, H, W) float32, "source": str}

RGB in [0, 1]; T is the clip length (1 for single frames), so a DataLoader batch is
(N, T, 3, H, W). ``source`` names the file or frames, the crop and the augmentation; it is the
same on every run, so it can key a teacher-output cache.

``__getitem__`` is a pure function of (seed, index): each sample draws from
``np.random.default_rng([seed, index])`` and nothing else, so DataLoader workers, reruns and
the teacher cache all agree. Randomness is drawn first into a small plan (``plan(index)``),
then rendered; tests check the rendering against the plan. Random-sampling sets take a
``length`` (a virtual epoch); the same indices give the same crops every epoch, which is what
lets a teacher run once per crop. Change ``seed`` for fresh crops.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from livesharp.io import IMAGE_SUFFIXES


class DataError(ValueError):
    """Training data is missing, incomplete or cannot serve the requested samples."""


# --- files -------------------------------------------------------------------------------


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; grey and RGBA files become RGB."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def list_images(folders: str | Path | Sequence[str | Path]) -> list[Path]:
    """All image files under ``folders`` (recursively), sorted per folder.

    >>> list_images(["/data/kodak24_crop500"])[:1]  # doctest: +SKIP
    [PosixPath('/data/kodak24_crop500/kodim01.png')]
    """
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    paths: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(f"image folder {folder} does not exist")
        paths += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return paths


def split_files(
    paths: Sequence[str | Path], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split files into (train, val) by a hash of ``folder/name``.

    Each file's side depends on its own name only, so adding or removing files never moves
    another file across the split (a random permutation would).
    """
    train, val = [], []
    for p in map(Path, paths):
        digest = hashlib.sha1(f"{seed}:{p.parent.name}/{p.name}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        (val if u < val_fraction else train).append(p)
    return train, val


def load_frames(source: str | Path, scale: float = 1.0) -> np.ndarray:
    """Decode a video file (PyAV) or a folder of images into (F, H, W, 3) uint8 RGB.

    ``scale`` < 1 shrinks frames on load (INTER_AREA) to save memory. Note that it shrinks
    the blur too: a 20 px smear at scale 1 is 10 px at 0.5 (and each crop sees more scene).
    """
    source = Path(source)

    def shrink(frame: np.ndarray) -> np.ndarray:  # on the fly, so full-size frames never pile up
        return frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    if source.is_dir():
        frames = [shrink(read_rgb(p)) for p in list_images(source)]
    elif source.is_file():
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = [shrink(f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    else:
        raise DataError(f"frame source {source} is neither a video file nor a folder")
    if not frames or any(f.shape != frames[0].shape for f in frames):
        raise DataError(f"{source} holds no frames, or frames of different sizes")
    # Move frames into one array one by one: np.stack would hold two copies (1.6 GB at 720p).
    out = np.empty((len(frames), *frames[0].shape), np.uint8)
    for i in range(len(frames)):
        out[i], frames[i] = frames[i], None
    return out


# --- patches -----------------------------------------------------------------------------

Box = tuple[int, int, int, int]  # (y, x, h, w)


def edge_energy(img: np.ndarray) -> float:
    """Mean Sobel gradient magnitude of the grey image, in intensity per pixel.

    img: (H, W, 3) uint8, or float in [0, 1]. A ramp rising by s per pixel scores s; flat 0.
    """
    x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    grey = x.mean(axis=2)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx * gx + gy * gy).mean() / 8)  # the 3x3 Sobel has gain 8


def choose_box(
    rng: np.random.Generator,
    reference: np.ndarray,
    size: tuple[int, int] | None,
    augment: bool,
    min_edge_energy: float = 0.0,
    tries: int = 5,
) -> Box:
    """Pick a (y, x, h, w) crop of ``reference`` (H, W, 3).

    size None: the whole frame; augment False: the centre crop. Otherwise uniform random,
    redrawn up to ``tries`` times while the patch's ``edge_energy`` is below
    ``min_edge_energy`` (flat sky and walls teach a deblurrer nothing); the most textured
    draw wins if none passes.
    """
    H, W = reference.shape[:2]
    if size is None:
        return (0, 0, H, W)
    h, w = size
    if h > H or w > W:
        raise DataError(f"crop {w}x{h} is larger than the {W}x{H} frames")
    if not augment:
        return ((H - h) // 2, (W - w) // 2, h, w)
    best, best_energy = None, -1.0
    for _ in range(max(1, tries)):
        box = (int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w)
        if min_edge_energy <= 0:
            return box
        energy = edge_energy(reference[box[0] : box[0] + h, box[1] : box[1] + w])
        if energy >= min_edge_energy:
            return box
        if energy > best_energy:
            best, best_energy = box, energy
    return best


def choose_aug(rng: np.random.Generator, augment: bool, square: bool) -> tuple[bool, int]:
    """(horizontal flip, quarter turns): the 8 symmetries of a square, 4 of a rectangle.

    Rectangles only get half turns so every sample in a batch keeps its (H, W).
    """
    if not augment:
        return False, 0
    hflip = bool(rng.integers(2))
    return hflip, int(rng.integers(4)) if square else 2 * int(rng.integers(2))


def apply_aug(clip: np.ndarray, hflip: bool, k: int) -> np.ndarray:
    """Flip, then turn k quarter turns, a (T, H, W, C) clip; same call for blur and sharp."""
    if hflip:
        clip = clip[:, :, ::-1]
    return np.rot90(clip, k, axes=(1, 2))


def crop_clip(clip: np.ndarray, box: Box) -> np.ndarray:
    """(T, H, W, C) -> (T, h, w, C) at box (y, x, h, w)."""
    y, x, h, w = box
    return clip[:, y : y + h, x : x + w]


def to_sample(blur: np.ndarray, sharp: np.ndarray, source: str, has_gt: bool = True) -> dict:
    """(T, H, W, 3) uint8 blur and sharp -> {"blur", "sharp": (T, 3, H, W) float32, "source",
    "has_gt"}. ``has_gt`` False: ``sharp`` is only a stand-in (footage with no ground truth)."""

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float().div_(255)

    return {"blur": tensor(blur), "sharp": tensor(sharp), "source": source, "has_gt": torch.tensor(has_gt)}


def _tag(box: Box, hflip: bool, k: int) -> str:
    y, x, h, w = box
    return f"box={y},{x},{h}x{w}|aug={'f' if hflip else ''}r{k}"


def _check_index(index: int, length: int) -> None:
    # An IndexError (not a wrap-around) ends plain iteration over the dataset.
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {length} samples")

def pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mirror-pad an (H, W, 3) image evenly to at least (h, w); small stills then still fit."""
    py, px = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if not (py or px):
        return img
    return np.pad(img, ((py // 2, py - py // 2), (px // 2, px - px // 2), (0, 0)), mode="symmetric")



# --- real footage without ground truth ---------------------------------------------------------


class RealClips(Dataset):
    """Clips of real video that has no sharp version: webcam footage, phone video.

    Each sample is ``clip_len`` consecutive frames, cropped and flipped alike, returned as the
    input with ``has_gt`` False; its ``sharp`` is the input again, a stand-in the loop replaces
    with the teacher's output. Teacher labels are the only supervision such footage can get,
    and it is what teaches the student the look of real, un-paired video (sensor noise,
    compression, autofocus softness) rather than only the GoPro recipe's synthetic blur.

    sources: video files or frame folders; ``scale`` shrinks them on load (as in load_frames).
    """

    def __init__(self, sources, clip_len: int = 2, crop: int = 256, seed: int = 0, length: int = 1000,
                 min_edge_energy: float = 0.0, scale: float = 1.0):
        if not sources:
            raise DataError("RealClips needs at least one video")
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        suffix = "" if scale == 1.0 else f"@{scale:g}x"
        self.videos = [(Path(s).name + suffix, load_frames(s, scale)) for s in sources]
        for name, frames in self.videos:
            if len(frames) < clip_len or min(frames.shape[1:3]) < crop:
                raise DataError(f"{name}: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} cannot give clips of {clip_len} frames at {crop} px")
        self.clip_len, self.crop, self.seed, self.length, self.min_edge_energy = clip_len, crop, seed, length, min_edge_energy

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        _check_index(index, self.length)
        rng = np.random.default_rng([self.seed, index])
        name, frames = self.videos[int(rng.integers(len(self.videos)))]
        first = int(rng.integers(0, len(frames) - self.clip_len + 1))
        box = choose_box(rng, frames[first], (self.crop, self.crop), True, self.min_edge_energy)
        hflip, k = choose_aug(rng, True, True)
        clip = apply_aug(crop_clip(frames[first : first + self.clip_len], box), hflip, k)
        return to_sample(clip, clip, f"real:{name}|t={first}x{self.clip_len}|{_tag(box, hflip, k)}", has_gt=False)

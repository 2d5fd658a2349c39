"""Training data: GoPro pairs, the GoPro blur recipe on 240 fps video, synthetic blur on stills.

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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from train import camera as cam_

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
GAMMA = 2.2  # the sRGB-like encoding the GoPro recipe assumes


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
        self.camera, self.sharp_fraction = camera, sharp_fraction
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
        return HighFpsPlan(centres, n, box, hflip, k, cam_.sample_camera(rng), int(rng.integers(2**63)))

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
    if deg.jpeg_quality is not None:
        # OpenCV's encoder wants BGR; feeding RGB would swap the chroma planes' roles.
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, deg.jpeg_quality])
        u8 = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return u8


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random blur + noise + JPEG of one image, (H, W, 3) uint8 or float [0, 1] -> float32.

    >>> out = degrade(np.zeros((32, 32, 3), np.float32), np.random.default_rng(0))
    >>> out.shape, out.dtype
    ((32, 32, 3), dtype('float32'))
    """
    x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    deg = sample_degradation(rng)
    return finish(blur_image(x, deg.kernels[0]), deg, rng).astype(np.float32) / 255


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mirror-pad an (H, W, 3) image evenly to at least (h, w); small stills then still fit."""
    py, px = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if not (py or px):
        return img
    return np.pad(img, ((py // 2, py - py // 2), (px // 2, px - px // 2), (0, 0)), mode="symmetric")


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
        region = choose_box(rng, _pad_to(img, *need), need, self.augment, self.min_edge_energy)
        hflip, k = choose_aug(rng, self.augment, h == w)
        return SynthPlan(path, index, region, (h, w), offsets, deg, int(rng.integers(2**63)), hflip, k)

    def render(self, plan: SynthPlan, img: np.ndarray | None = None) -> dict:
        """The sample a plan describes (pure given the still)."""
        img = read_rgb(plan.path) if img is None else img
        y, x, rh, rw = plan.region
        region = _pad_to(img, rh, rw)[y : y + rh, x : x + rw]
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

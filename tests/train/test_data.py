"""Tests for train.data, train.gopro and train.synthetic on tiny synthetic media written into tmp_path."""

from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from train import data, gopro, synthetic
from train.data import DataError


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[..., ::-1])


def as_uint8(clip: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) float -> (T, H, W, 3) uint8, exact for 8-bit data."""
    return (clip.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def textured(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth random image with edges: blur-able, and each one distinct."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)[:h, :w].copy()


# --- GoPro layout ------------------------------------------------------------------------


@pytest.fixture
def gopro_root(tmp_path):
    """2 sequences x 3 frames of 64x48 PNGs; blur = 255 - sharp, so alignment is checkable."""
    frames = {}
    for s, seq in enumerate(["GOPR0001_00_00", "GOPR0002_00_00"]):
        for f in range(1, 4):
            sharp = textured(10 * s + f, 48, 64)
            frames[(seq, f)] = sharp
            write_png(tmp_path / "train" / seq / "sharp" / f"{f:06d}.png", sharp)
            write_png(tmp_path / "train" / seq / "blur" / f"{f:06d}.png", 255 - sharp)
    return tmp_path, frames


def identify(frame: np.ndarray, frames: dict) -> tuple[str, int]:
    matches = [key for key, img in frames.items() if np.array_equal(img, frame)]
    assert len(matches) == 1
    return matches[0]


def test_gopro_clips_are_consecutive_within_one_sequence(gopro_root):
    root, frames = gopro_root
    ds = gopro.GoProPairs(root, clip_len=2, crop=None, augment=False)
    assert len(ds) == 4  # 2 sequences x 2 starts
    seen = []
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["sharp"].shape == (2, 3, 48, 64) and sample["sharp"].dtype == torch.float32
        keys = [identify(f, frames) for f in as_uint8(sample["sharp"])]
        assert keys[0][0] == keys[1][0] and keys[1][1] == keys[0][1] + 1
        # The partner with the same name: blur was written as 255 - sharp.
        np.testing.assert_array_equal(as_uint8(sample["blur"]), 255 - as_uint8(sample["sharp"]))
        seen.append(keys[0])
    assert sorted(seen) == [(seq, f) for seq in ("GOPR0001_00_00", "GOPR0002_00_00") for f in (1, 2)]


def test_gopro_augment_keeps_pairs_aligned_and_is_deterministic(gopro_root):
    root, _ = gopro_root
    ds = gopro.GoProPairs(root, clip_len=3, crop=32, augment=True, seed=5, length=16)
    again = gopro.GoProPairs(root, clip_len=3, crop=32, augment=True, seed=5, length=16)
    augs = set()
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["blur"].shape == (3, 3, 32, 32)
        np.testing.assert_array_equal(as_uint8(sample["blur"]), 255 - as_uint8(sample["sharp"]))
        assert torch.equal(sample["sharp"], again[i]["sharp"]) and sample["source"] == again[i]["source"]
        augs.add(sample["source"].split("aug=")[1])
    assert len(augs) > 2  # flips and turns really happen


def test_gopro_clips_do_not_span_a_gap_in_frame_numbers(gopro_root):
    root, _ = gopro_root
    seq = root / "train" / "GOPR0001_00_00"
    for kind in ("sharp", "blur"):
        (seq / kind / "000002.png").rename(seq / kind / "000007.png")  # frames 1, 3, 7
    ds = gopro.GoProPairs(root, clip_len=2, crop=None, augment=False)
    assert [(s.name, names) for s, names in ds.clips] == [
        ("GOPR0002_00_00", ("000001.png", "000002.png")),
        ("GOPR0002_00_00", ("000002.png", "000003.png")),
    ]


def test_gopro_missing_partner_names_the_file(gopro_root):
    root, _ = gopro_root
    missing = root / "train" / "GOPR0002_00_00" / "sharp" / "000002.png"
    missing.unlink()
    with pytest.raises(DataError, match="GOPR0002_00_00/sharp/000002.png"):
        gopro.GoProPairs(root)


def test_gopro_missing_root_gives_a_fix_hint(tmp_path):
    with pytest.raises(DataError, match="fix:"):
        gopro.GoProPairs(tmp_path / "nowhere")


# --- high-frame-rate video ---------------------------------------------------------------


def moving_square(n: int = 40, size: int = 64) -> np.ndarray:
    frames = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        frame = textured(1000, size, size) // 4  # dark textured background
        frame[20:36, 4 + t : 20 + t] = 255  # a bright square moving 1 px per frame
        frames[t] = frame
    return frames


@pytest.fixture(scope="module")
def square_video(tmp_path_factory):
    frames = moving_square()
    path = tmp_path_factory.mktemp("video") / "square.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=240)  # lossless, so decoding gives frames back
        stream.width, stream.height, stream.pix_fmt = 64, 64, "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path, frames


def test_load_frames_from_video_and_folder(square_video, tmp_path):
    path, frames = square_video
    np.testing.assert_array_equal(data.load_frames(path), frames)
    for t in range(3):
        write_png(tmp_path / f"{t:04d}.png", frames[t])
    np.testing.assert_array_equal(data.load_frames(tmp_path), frames[:3])
    assert data.load_frames(path, scale=0.5).shape == (40, 32, 32, 3)


def test_highfps_blur_is_the_linear_light_mean_of_the_window(square_video):
    path, frames = square_video
    ds = gopro.HighFpsBlur(path, window=(7, 7), crop=None, augment=False)
    plan = ds.plan(1)
    (c,) = plan.centres
    window = frames[c - 3 : c + 4].astype(np.float64) / 255
    linear = (window**2.2).mean(axis=0) ** (1 / 2.2)
    sample = ds[1]
    got = sample["blur"][0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, linear, atol=0.5 / 255 + 1e-6)  # rounded to 8 bits
    # The gamma-space mean differs a lot at the square's edges: the test can tell them apart.
    assert np.abs(window.mean(axis=0) - linear).max() > 0.1
    np.testing.assert_array_equal(as_uint8(sample["sharp"])[0], frames[c])
    assert f"n=7|centres={c}+" in sample["source"]


def test_highfps_random_crops_follow_their_plan(square_video):
    _, frames = square_video
    ds = gopro.HighFpsBlur(frames, window=(3, 7), clip_len=2, crop=24, seed=3, length=12, name="square")
    for i in range(len(ds)):
        plan, sample = ds.plan(i), ds[i]
        assert plan.n in (3, 5, 7) and plan.centres[1] - plan.centres[0] == plan.n  # back to back
        h = plan.n // 2
        expect_sharp = data.apply_aug(data.crop_clip(frames[list(plan.centres)], plan.box), plan.hflip, plan.k)
        expect_blur = np.stack(
            [gopro.gopro_blur(data.crop_clip(frames[c - h : c + h + 1], plan.box)) for c in plan.centres]
        )
        np.testing.assert_array_equal(as_uint8(sample["sharp"]), expect_sharp)
        np.testing.assert_array_equal(as_uint8(sample["blur"]), data.apply_aug(expect_blur, plan.hflip, plan.k))


def test_highfps_is_deterministic_under_seed(square_video):
    _, frames = square_video
    make = lambda seed: gopro.HighFpsBlur(frames, window=(3, 7), crop=24, seed=seed, length=4)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    assert all(torch.equal(a[i]["blur"], b[i]["blur"]) and a[i]["source"] == b[i]["source"] for i in range(4))
    assert any(a[i]["source"] != c[i]["source"] for i in range(4))


def test_highfps_stride_one_gives_consecutive_centres(square_video):
    _, frames = square_video
    ds = gopro.HighFpsBlur(frames, window=(5, 5), clip_len=3, crop=16, stride=1, length=5)
    for i in range(len(ds)):
        c = ds.plan(i).centres
        assert c == (c[0], c[0] + 1, c[0] + 2)


def test_split_highfps_keeps_train_and_val_frames_apart(square_video):
    _, frames = square_video
    train_range, val_range = gopro.split_highfps(len(frames), val_fraction=0.4, max_window=7)
    assert train_range[1] + 7 <= val_range[0] and val_range[1] == len(frames)
    train = gopro.HighFpsBlur(frames, window=(3, 7), clip_len=2, frame_range=train_range, crop=16, length=200)
    val = gopro.HighFpsBlur(frames, window=(3, 7), clip_len=2, frame_range=val_range, crop=None, augment=False)

    def touched(ds):
        out = set()
        for i in range(len(ds)):
            plan = ds.plan(i)
            out |= {f for c in plan.centres for f in range(c - plan.n // 2, c + plan.n // 2 + 1)}
        return out

    train_frames, val_frames = touched(train), touched(val)
    assert len(val) >= 1 and val_frames and train_frames
    assert min(train_frames) >= train_range[0] and max(train_frames) < train_range[1]
    assert min(val_frames) >= val_range[0] and max(val_frames) < val_range[1]
    assert max(train_frames) + 7 <= min(val_frames)


def test_validation_is_repeatable_full_frames(square_video):
    _, frames = square_video
    val = gopro.HighFpsBlur(frames, window=(5, 5), crop=None, augment=False, every=4)
    centres = [val.plan(i).centres[0] for i in range(len(val))]
    assert centres == list(range(2, 38, 4)) and val[0]["blur"].shape == (1, 3, 64, 64)
    with pytest.raises(IndexError):
        val[len(val)]


# --- synthetic blur ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [7, 15, 31])
def test_motion_kernels_are_normalised_and_centred(size):
    rng = np.random.default_rng(size)
    ys, xs = np.mgrid[:size, :size]
    for kernel in [synthetic.motion_kernel(rng, size), synthetic.linear_kernel(size / 2, 0.7, size)]:
        assert kernel.shape == (size, size) and kernel.min() >= 0
        assert kernel.sum() == pytest.approx(1, abs=1e-5)
        assert (kernel * ys).sum() == pytest.approx((size - 1) / 2, abs=0.5)  # no image shift
        assert (kernel * xs).sum() == pytest.approx((size - 1) / 2, abs=0.5)
        assert (kernel > 0).sum() > size // 2  # a path, not a single pixel


def test_defocus_and_gaussian_kernels_sum_to_one():
    assert synthetic.defocus_kernel(0).tolist() == [[1.0]]
    for radius in (1.0, 2.5, 6.0):
        kernel = synthetic.defocus_kernel(radius)
        assert kernel.shape == (2 * int(np.ceil(radius)) + 1,) * 2
        assert kernel.sum() == pytest.approx(1, abs=1e-5)
        np.testing.assert_allclose(kernel, kernel.T, atol=1e-7)  # round
    assert synthetic.gaussian_kernel(1.5).sum() == pytest.approx(1, abs=1e-5)


def test_degrade_is_deterministic_and_blurs():
    img = textured(7, 96, 96)
    out = synthetic.degrade(img, np.random.default_rng(3))
    assert out.shape == (96, 96, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    np.testing.assert_array_equal(out, synthetic.degrade(img, np.random.default_rng(3)))
    assert not np.array_equal(out, synthetic.degrade(img, np.random.default_rng(4)))
    # Mild blurs (7 px kernels) are in the mix on purpose, so bound each loosely, the mean tightly.
    sharp = data.edge_energy(img)
    ratios = [data.edge_energy(synthetic.degrade(img, np.random.default_rng(s))) / sharp for s in range(8)]
    assert max(ratios) < 0.9 and np.mean(ratios) < 0.6


@pytest.fixture
def stills(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(80, 96), (96, 80), (40, 40)]):  # the last is smaller than the crop
        paths.append(tmp_path / "stills" / f"img{i}.png")
        write_png(paths[-1], textured(100 + i, h, w))
    return paths


def test_synthetic_clip_shapes_determinism_and_blur(stills):
    ds = synthetic.SyntheticBlur(stills, crop=48, clip_len=3, seed=2, length=6)
    again = synthetic.SyntheticBlur(stills, crop=48, clip_len=3, seed=2, length=6)
    other = synthetic.SyntheticBlur(stills, crop=48, clip_len=3, seed=9, length=6)
    blurred_less = 0
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["blur"].shape == sample["sharp"].shape == (3, 3, 48, 48)
        assert torch.equal(sample["blur"], again[i]["blur"]) and sample["source"] == again[i]["source"]
        assert not torch.equal(sample["blur"], other[i]["blur"])
        sharp = sample["sharp"][0].permute(1, 2, 0).numpy()
        blurred_less += data.edge_energy(sample["blur"][0].permute(1, 2, 0).numpy()) < data.edge_energy(sharp)
    assert blurred_less == len(ds)


def best_shift(a: np.ndarray, b: np.ndarray, reach: int = 4) -> tuple[int, int]:
    """The integer (dy, dx) for which b shifted matches a exactly on their overlap, or raise."""
    h, w = a.shape[:2]
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            a_part = a[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
            b_part = b[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
            if np.array_equal(a_part, b_part):
                return dy, dx
    raise AssertionError("frames are not shifted copies of each other")


def test_synthetic_clip_is_a_slowly_moving_window(stills):
    ds = synthetic.SyntheticBlur(stills[:2], crop=40, clip_len=3, seed=4, length=4, max_shift=3, augment=False)
    moved = 0
    for i in range(len(ds)):
        plan = ds.plan(i)
        sharp = as_uint8(ds.render(plan)["sharp"])
        for t in range(2):
            step = tuple(b - a for a, b in zip(plan.offsets[t], plan.offsets[t + 1]))
            assert best_shift(sharp[t], sharp[t + 1]) == step and max(map(abs, step)) <= 3
            moved += step != (0, 0)
        # Without blur, noise or JPEG each blurry frame is its sharp frame: same window.
        identity = synthetic.Degradation((np.ones((1, 1), np.float32),) * 3, 0.0, 0.0, None)
        plain = ds.render(replace(plan, degradation=identity))
        np.testing.assert_array_equal(as_uint8(plain["blur"]), sharp)
    assert moved > 0


def test_synthetic_augment_transforms_blur_and_sharp_alike(stills):
    ds = synthetic.SyntheticBlur(stills, crop=32, clip_len=2, seed=1, length=3)
    for i in range(len(ds)):
        plan = ds.plan(i)
        plain = ds.render(replace(plan, hflip=False, k=0))
        turned = ds.render(replace(plan, hflip=True, k=1))
        for key in ("blur", "sharp"):
            np.testing.assert_array_equal(as_uint8(turned[key]), data.apply_aug(as_uint8(plain[key]), True, 1))


def test_synthetic_validation_uses_centre_crops(stills):
    ds = synthetic.SyntheticBlur(stills[:1], crop=32, augment=False, seed=0)
    sample = ds[0]
    np.testing.assert_array_equal(as_uint8(sample["sharp"])[0], textured(100, 80, 96)[24:56, 32:64])


def test_min_edge_energy_rejects_flat_patches():
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, 96:] = textured(3, 64, 32)  # only the right quarter has texture
    rngs = [np.random.default_rng(s) for s in range(10)]
    boxes = [data.choose_box(rng, img, (32, 32), True, min_edge_energy=0.02, tries=20) for rng in rngs]
    assert all(x >= 64 for _, x, _, _ in boxes)
    flat = [data.choose_box(np.random.default_rng(s), img, (32, 32), True) for s in range(10)]
    assert any(x < 64 for _, x, _, _ in flat)


def test_file_split_is_stable_when_files_are_added():
    paths = [Path(f"/d/set/img{i:03d}.png") for i in range(200)]
    train, val = data.split_files(paths, val_fraction=0.1)
    assert 5 <= len(val) <= 40 and not set(train) & set(val) and len(train) + len(val) == 200
    added = [Path(f"/d/set/new{i}.png") for i in range(50)]
    more_train, more_val = data.split_files(paths + added, val_fraction=0.1)
    assert set(val) <= set(more_val) and set(train) <= set(more_train)


def test_list_images_finds_images_only(stills, tmp_path):
    (tmp_path / "stills" / "notes.txt").write_text("not an image")
    assert data.list_images(tmp_path / "stills") == sorted(stills)
    with pytest.raises(DataError):
        data.list_images(tmp_path / "missing")

"""train.motion: camera and object motion rendered on stills."""

import dataclasses

import cv2
import numpy as np
import pytest

from train import camera as cam
from train.data import edge_energy
from train.motion import SHARP, STRONG, TrajectoryBlur, exposure_moves


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion_stills")
    rng = np.random.default_rng(0)
    for i in range(4):
        img = cv2.resize(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), (160, 160), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(root / f"s{i}.png"), img)
    return sorted(root.iterdir())


def only(strength: str, lo: float = 0.0, hi: float = 0.0) -> dict:
    return {strength: (1.0, (lo, hi))}


def test_samples_are_pure_functions_of_seed_and_index(stills):
    a = TrajectoryBlur(stills, crop=32, clip_len=2, seed=3, length=6)
    b = TrajectoryBlur(stills, crop=32, clip_len=2, seed=3, length=6)
    for i in range(6):
        x, y = a[i], b[i]
        assert x["source"] == y["source"] and x["blur"].equal(y["blur"]) and x["sharp"].equal(y["sharp"])
        assert x["blur"].shape == (2, 3, 32, 32)
    assert a[0]["source"] != TrajectoryBlur(stills, crop=32, clip_len=2, seed=4, length=6)[0]["source"]


def test_sharp_samples_are_the_target_plus_only_camera_noise(stills):
    clean = TrajectoryBlur(stills, crop=48, clip_len=2, length=4, strengths=only(SHARP), camera=False)
    for i in range(4):
        s = clean[i]
        assert s["blur"].equal(s["sharp"])  # no motion, no camera: identical
    noisy = TrajectoryBlur(stills, crop=48, clip_len=1, length=40, strengths=only(SHARP))
    for i in range(40):
        plan = noisy.plan(i)
        s = noisy.render(plan)
        diff = (s["blur"] - s["sharp"]) * 255
        c = plan.camera
        if c.codec is None and c.read_noise == 0 and c.shot_noise == 0:
            assert diff.abs().max() == 0
        elif c.codec is None:  # noise alone: zero mean, no larger than the camera's noise level
            assert abs(float(diff.mean())) < 1.0
            assert float(diff.std()) < 3 * 255 * np.sqrt(c.read_noise**2 + c.shot_noise) + 1
        else:  # a codec on random colour blocks: chroma errors at edges, but no brightness shift
            assert abs(float(diff.mean())) < 2.0


def test_strong_motion_blurs_and_the_target_is_an_exact_crop(stills):
    ds = TrajectoryBlur(stills, crop=64, clip_len=2, length=8, strengths=only(STRONG, 10, 14), camera=False, object_prob=0.0)
    img = cv2.cvtColor(cv2.imread(str(stills[0])), cv2.COLOR_BGR2RGB)
    for i in range(0, 8, 4):  # files 0 and 0 again: index % 4 == 0
        s = ds[i]
        blur, sharp = (s["blur"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), (s["sharp"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        for t in range(2):
            assert edge_energy(blur[t]) < 0.85 * edge_energy(sharp[t])  # a 10-14 px smear over 8 px blocks
        # every target is a crop of the still itself, never an interpolated one
        plan = ds.plan(i)
        raw = ds.render(dataclasses.replace(plan, hflip=False, k=0))["sharp"][0].permute(1, 2, 0).numpy() * 255
        res = cv2.matchTemplate(img.astype(np.float32), raw.astype(np.float32), cv2.TM_SQDIFF)
        assert res.min() / raw.size < 0.01  # within rounding of the tone curve's round trip


def test_object_motion_blurs_the_object_and_leaves_the_background(stills):
    ds = TrajectoryBlur(stills, crop=64, clip_len=1, length=20, strengths=only(STRONG, 12, 14), camera=False, object_prob=1.0)
    plan = ds.plan(0)
    still = np.zeros_like(plan.camera_moves)
    still[..., 0, 0] = still[..., 1, 1] = 1  # the camera holds still: identity for every sub-frame
    s = ds.render(dataclasses.replace(plan, camera_moves=still, hflip=False, k=0))
    diff = (s["blur"] - s["sharp"]).abs()[0].mean(0).numpy()
    m = ds.margin
    mask = plan.object_mask[m : m + 64, m : m + 64]
    reach = cv2.dilate(mask, np.ones((41, 41), np.uint8))  # everywhere the object's path (<= 14 px, turns) can cover
    assert (reach < 0.01).sum() > 100
    assert diff[reach < 0.01].max() < 1e-6  # background untouched
    assert diff[mask > 0.99].mean() > 0.02  # the moving object is blurred


def test_exposure_moves_centre_every_exposure_on_a_whole_pixel():
    """Each exposure's path is centred on its mean (the blur's centre, which a blurry frame
    shows) at a whole-pixel position, with no turn or zoom there: the target is an exact crop."""
    mats = exposure_moves(np.random.default_rng(0), clip_len=3, n=7, extent=9.0, centre=(40, 40), max_turn=0.0, max_zoom=0.0)
    for t in range(3):
        mean = mats[t, :, :, 2].mean(axis=0)
        assert np.allclose(mats[t, :, :, :2], np.eye(2)) and np.allclose(mean, np.round(mean))
        shifts = mats[t, :, :, 2] - mean
        chord = max(np.linalg.norm(a - b) for a in shifts for b in shifts)
        assert 6 < chord < 12  # the path spans about ``extent`` px (turn and zoom add a little)


def test_sharp_share_keeps_the_blurred_classes_ratio():
    from train.motion import MILD, STRENGTHS, with_sharp_share

    same = with_sharp_share(STRENGTHS[SHARP][0])
    assert all(same[k][0] == pytest.approx(STRENGTHS[k][0]) and same[k][1] == STRENGTHS[k][1] for k in STRENGTHS)
    more = with_sharp_share(0.3)
    assert more[SHARP][0] == 0.3 and sum(p for p, _ in more.values()) == pytest.approx(1.0)
    assert more[STRONG][0] / more[MILD][0] == pytest.approx(STRENGTHS[STRONG][0] / STRENGTHS[MILD][0])
    with pytest.raises(ValueError, match="sharp share"):
        with_sharp_share(1.0)


def test_the_strong_class_blurs_as_far_as_its_extents_say(stills):
    """--motion-strong: a strong class of 1-2 px barely blurs, one of 20-26 px blurs far more;
    its share among the classes is kept."""
    from train.motion import STRENGTHS, with_sharp_share, with_strong_extent

    def mean_psnr(lo, hi):
        ds = TrajectoryBlur(stills, crop=64, length=12, strengths=with_sharp_share(0.0, with_strong_extent(lo, hi)), camera=False, object_prob=0.0)
        return np.mean([-10 * np.log10(float(((s["blur"] - s["sharp"]) ** 2).mean())) for s in map(ds.__getitem__, range(12))])

    assert mean_psnr(1, 2) > mean_psnr(20, 26) + 6
    assert with_strong_extent(3, 12)[STRONG] == (STRENGTHS[STRONG][0], (3.0, 12.0))


def test_video_sharp_stills_carry_a_video_frames_detail_not_a_stills(stills):
    """--motion-video-sharp: each still is shrunk and softened before the motion, as train.soft
    does its targets, so the target has less fine detail than the crisp still's; samples stay
    pure functions of (seed, index), and the sharp class is still target -> target."""

    def fine_detail(s):
        g = s["sharp"][0].mean(0).numpy()
        return float(np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0)).mean())

    crisp = TrajectoryBlur(stills, crop=48, length=8, strengths=only(SHARP), camera=False)
    video, again = (TrajectoryBlur(stills, crop=48, length=8, strengths=only(SHARP), camera=False, video_sharp=True) for _ in range(2))
    for i in range(8):
        a, b = video[i], again[i]
        assert a["source"] == b["source"] and a["sharp"].equal(b["sharp"]) and a["blur"].equal(a["sharp"])
        assert "|v=" in a["source"] and "|v=" not in crisp[i]["source"]
        plan = video.plan(i)
        assert 0.5 <= plan.shrink <= 1 and 0.5 <= plan.target_sigma <= 0.9
    assert np.median([fine_detail(video[i]) for i in range(8)]) < 0.7 * np.median([fine_detail(crisp[i]) for i in range(8)])


def test_depth_blurs_near_pixels_more_than_far_ones_and_leaves_every_other_choice(stills):
    """--motion-depth: the same seed gives the same stills, crops, classes, paths and cameras;
    with depth, the part of the crop the field calls near (moving with twice the camera's path)
    is blurred far more than the part it calls far (a tenth of it), and the target is unchanged."""
    flat = TrajectoryBlur(stills, crop=64, length=8, strengths=only(STRONG, 10, 14), camera=False, object_prob=0.0)
    deep = TrajectoryBlur(stills, crop=64, length=8, strengths=only(STRONG, 10, 14), camera=False, object_prob=0.0, depth_prob=1.0)
    near_far = np.full((64, 64), 0.1, np.float32)
    near_far[:, 32:] = 2.0
    for i in range(8):
        a, b = flat.plan(i), deep.plan(i)
        assert b.depth is not None and b.depth.shape == (64, 64) and abs(float(b.depth.mean()) - 1) < 0.05
        assert (a.strength, a.n, a.region, a.camera, a.hflip, a.k) == (b.strength, b.n, b.region, b.camera, b.hflip, b.k)
        assert np.array_equal(a.camera_moves, b.camera_moves) and "|depth|" in deep.render(b)["source"]
        s = deep.render(dataclasses.replace(b, depth=near_far, hflip=False, k=0))
        assert s["sharp"].equal(flat.render(dataclasses.replace(a, hflip=False, k=0))["sharp"])
        err = (s["blur"] - s["sharp"]).abs()[0].mean(0).numpy()
        assert err[:, 40:].mean() > 3 * err[:, :24].mean()
    assert all(p.depth is None for p in map(TrajectoryBlur(stills, crop=64, length=8).plan, range(8)))

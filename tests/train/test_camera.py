"""train.camera: each step of the camera pipeline changes the image as a real camera would."""

import dataclasses

import numpy as np
import pytest

from train import camera as cam


def flat(level: float, size: int = 64) -> np.ndarray:
    return np.full((1, size, size, 3), level, np.float32)


def test_poisson_noise_variance_grows_with_brightness():
    c = dataclasses.replace(cam.CLEAN, gamma=1.0, read_noise=0.002, shot_noise=0.004)
    rng = np.random.default_rng(0)
    dark = cam.sensor_noise(flat(0.05), c, rng) - 0.05
    bright = cam.sensor_noise(flat(0.8), c, rng) - 0.8
    # var = read^2 + shot * x: 4e-6 + 2e-4 at 0.05, 4e-6 + 3.2e-3 at 0.8
    assert dark.var() == pytest.approx(0.002**2 + 0.004 * 0.05, rel=0.1)
    assert bright.var() == pytest.approx(0.002**2 + 0.004 * 0.8, rel=0.1)
    assert bright.var() > 10 * dark.var()


def test_saturated_highlights_stay_saturated_when_smeared():
    """A lamp brighter than saturation, smeared over 9 px, stays at 255 along its streak, while
    the same smear without the highlight gain falls well below 255."""
    img = np.full((32, 64, 3), 60, np.uint8)
    img[:, 30:34] = 255  # a 4 px bright line
    for gain, saturated in ((4.0, True), (1.0, False)):
        c = dataclasses.replace(cam.CLEAN, gamma=2.2, highlight_gain=gain)
        scene = cam.to_linear(img, c)
        smear = sum(np.roll(scene, dx, axis=1) for dx in range(-4, 5)) / 9  # horizontal motion
        out = cam.finish(smear[None], c, np.random.default_rng(0))[0]
        assert (out[:, 31:33] == 255).all() == saturated
        assert cam.target(scene, c)[:, 30:34].min() == 255  # the sharp target is clipped too


def test_tone_curve_round_trips_and_gamma_one_is_plain_averaging():
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for gamma in (1.0, 2.2, 2.6):
        c = dataclasses.replace(cam.CLEAN, gamma=gamma)
        assert np.array_equal(cam.target(cam.to_linear(img, c), c), img)
    # gamma 1: the blur of two frames is their plain mean (GOPRO_Large's blur/ recipe)
    c = dataclasses.replace(cam.CLEAN, gamma=1.0)
    a, b = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)
    mix = (cam.to_linear(a, c) + cam.to_linear(b, c)) / 2
    assert cam.finish(mix[None], c, np.random.default_rng(0))[0].max() == 100
    # gamma 2.2: averaging light makes the mix brighter than the mean of stored values
    c = dataclasses.replace(cam.CLEAN, gamma=2.2)
    mix = (cam.to_linear(a, c) + cam.to_linear(b, c)) / 2
    assert cam.finish(mix[None], c, np.random.default_rng(0))[0].min() > 140


@pytest.mark.parametrize("codec, quality", [("jpeg", 60), ("h264", 30)])
def test_codecs_change_the_frames_a_little_and_keep_their_shape(codec, quality):
    rng = np.random.default_rng(2)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8), 8, 1), 8, 2)  # (2, 64, 64, 3)
    c = dataclasses.replace(cam.CLEAN, gamma=1.0, codec=codec, quality=quality)
    out = cam.finish(cam.to_linear(frames, c), c, np.random.default_rng(0))
    assert out.shape == frames.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - frames).mean()
    assert 0.5 < err < 40  # visibly compressed, still the same picture
    again = cam.finish(cam.to_linear(frames, c), c, np.random.default_rng(0))
    assert np.array_equal(out, again)  # deterministic: the codec is part of a pure sample


def test_sample_camera_is_deterministic_and_covers_every_codec():
    a = [cam.sample_camera(np.random.default_rng([5, i])) for i in range(200)]
    b = [cam.sample_camera(np.random.default_rng([5, i])) for i in range(200)]
    assert a == b
    assert {c.codec for c in a} == set(cam.CODECS)
    assert any(c.gamma == 1.0 for c in a) and any(c.gamma > 1.7 for c in a)
    assert any(c.highlight_gain > 1 for c in a) and any(c.read_noise == 0 for c in a)


def test_linear_fraction_sets_the_share_blurred_in_linear_light():
    def linear_share(fraction):
        cams = [cam.sample_camera(np.random.default_rng([7, i]), fraction) for i in range(400)]
        return np.mean([c.gamma != 1.0 for c in cams])

    assert linear_share(0.0) == 0.0 and linear_share(1.0) == 1.0
    assert 0.15 < linear_share(0.25) < 0.35 and 0.3 < linear_share(0.4) < 0.5

"""The camera between the scene and the file: tone curve, clipped highlights, sensor noise, codec.

Blur happens in the light that reaches the sensor; what a user's file holds has been through a
tone curve, clipped where the sensor saturated, has noise that grows with brightness, and was
compressed. RSBlur (Rim et al., ECCV 2022) measured each of these on real blur: training on
synthetic blur gained 30.12 -> 30.90 dB from averaging in linear light, -> 31.77 with noise,
-> 32.06 with Poisson-Gaussian noise and a camera pipeline. This module is that pipeline, as
pure functions of a ``Camera`` drawn once per sample:

    scene = to_linear(frame, cam)            # undo the tone curve, push highlights past 1.0
    blurry = mean of moving scene copies     # train.motion / train.gopro: the exposure
    out = finish(blurry, cam, rng)           # noise, clip, tone curve, 8 bits, codec
    target = from_linear(scene, cam) as 8 bits  # clean, highlights clipped as the sensor would

Every function is deterministic given its arguments (noise draws from the ``rng`` passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

CODECS = (None, "jpeg", "h264")


@dataclass(frozen=True)
class Camera:
    """One sample's camera. Intensities are linear light in [0, 1] (1 = sensor saturation)."""

    gamma: float  # tone curve: stored = linear ** (1 / gamma); 1.0 averages stored values as GOPRO_Large's blur/ does
    highlight_gain: float  # linear light near the top is scaled up to this: bright lights exceed saturation (1.0 = none)
    read_noise: float  # std of signal-independent noise (linear units)
    shot_noise: float  # Poisson-like: variance = shot_noise * linear intensity
    codec: str | None  # None, "jpeg" or "h264" (PyAV libx264, as webcams and phones store video)
    quality: int  # JPEG quality (higher is better) or H.264 CRF (lower is better)


CLEAN = Camera(gamma=2.2, highlight_gain=1.0, read_noise=0.0, shot_noise=0.0, codec=None, quality=0)


def sample_camera(rng: np.random.Generator, linear_fraction: float = 0.4) -> Camera:
    """A random camera: the mix of tone curves, highlights, noise levels and codecs real video has.

    By default 60 % of samples average stored values (gamma 1: GOPRO_Large's blur/, whose blurry
    frames keep the sharp frames' mean brightness) and ``linear_fraction`` (40 %) average in linear light through a random
    gamma 1.8-2.6, as a sensor does (brighter highlights' streaks; a network trained on that
    alone learns to darken every frame: the shipped v1 shifts sharp input by -1.4 grey levels); 30 % have highlights that saturate;
    noise in 60 % (GoPro-style averaged frames are nearly noise-free, webcams are not); a codec
    in 50 %: JPEG q 50-95 or H.264 CRF 18-32.
    """
    gamma = 1.0 if rng.random() < 1.0 - linear_fraction else float(rng.uniform(1.8, 2.6))
    gain = float(rng.uniform(1.5, 4.0)) if rng.random() < 0.3 else 1.0
    noisy = rng.random() < 0.6
    read = float(rng.uniform(0.002, 0.02)) if noisy else 0.0
    shot = float(rng.uniform(0.0, 0.004)) if noisy and rng.random() < 0.7 else 0.0
    draw = rng.random()
    codec, quality = (None, 0) if draw < 0.5 else ("jpeg", int(rng.integers(50, 96))) if draw < 0.8 else ("h264", int(rng.integers(18, 33)))
    return Camera(gamma, gain, read, shot, codec, quality)


def to_linear(img: np.ndarray, cam: Camera) -> np.ndarray:
    """(..., 3) uint8 or float [0, 1] stored values -> float32 scene light, highlights above 1.

    The highlight boost rises smoothly from 0.75 to 1.0 (linear), so only the brightest parts
    (lamps, sky, reflections) pass saturation; blurred, they smear into streaks that stay at 1.
    """
    x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    lin = np.power(x, cam.gamma, dtype=np.float32)
    if cam.highlight_gain > 1.0:
        t = np.clip((lin - 0.75) / 0.25, 0.0, 1.0)
        lin = lin * (1.0 + (cam.highlight_gain - 1.0) * t * t * (3 - 2 * t))
    return lin


def from_linear(lin: np.ndarray, cam: Camera) -> np.ndarray:
    """Scene light -> stored values in [0, 1] (float32): clip at saturation, apply the tone curve."""
    return np.power(np.clip(lin, 0.0, 1.0), 1.0 / cam.gamma, dtype=np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def sensor_noise(lin: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise on linear light: variance = read**2 + shot * intensity.

    Measured before saturation clipping, as on a sensor: saturated pixels stay saturated.
    """
    if not (cam.read_noise or cam.shot_noise):
        return lin
    var = cam.read_noise**2 + cam.shot_noise * np.clip(lin, 0.0, 1.0)
    return lin + rng.standard_normal(lin.shape, dtype=np.float32) * np.sqrt(var)


def jpeg(u8: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip (H, W, 3) uint8 RGB through JPEG (4:2:0, as cameras and browsers write it)."""
    # OpenCV's encoder wants BGR; feeding RGB would swap the chroma planes' roles.
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a frame")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def h264(frames: np.ndarray, crf: int) -> np.ndarray:
    """Round-trip (T, H, W, 3) uint8 RGB (even H and W) through H.264 yuv420p at ``crf``.

    The frames form one short stream (an I frame, then P frames), as a webcam's video does.
    One encoder thread keeps the output a pure function of the input.
    """
    t, h, w = frames.shape[:3]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 30)
    enc.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency", "threads": "1"}
    packets = []
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create("h264", "r")
    out = [f.to_ndarray(format="rgb24") for p in packets for f in dec.decode(p)]
    out += [f.to_ndarray(format="rgb24") for f in dec.decode(None)]
    if len(out) != t:
        raise RuntimeError(f"H.264 round trip returned {len(out)} of {t} frames")
    return np.stack(out)


def finish(blurry: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) scene light of the exposures -> (T, H, W, 3) uint8 as the file stores them."""
    stored = to_uint8(from_linear(sensor_noise(blurry, cam, rng), cam))
    if cam.codec == "jpeg":
        return np.stack([jpeg(f, cam.quality) for f in stored])
    if cam.codec == "h264":
        return h264(stored, cam.quality)
    return stored


def target(scene: np.ndarray, cam: Camera) -> np.ndarray:
    """Scene light of the sharp instant -> the clean uint8 frame the network should produce."""
    return to_uint8(from_linear(scene, cam))


def tag(cam: Camera) -> str:
    """A short, exact description of a camera, for the sample's ``source`` (the cache key)."""
    codec = f"{cam.codec}{cam.quality}" if cam.codec else "raw"
    return f"cam=g{cam.gamma:.3f},h{cam.highlight_gain:.3f},r{cam.read_noise:.4f},s{cam.shot_noise:.4f},{codec}"

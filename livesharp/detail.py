"""The detail stage: per-frame amounts of the network's correction and of three luma detail bands.

The network undoes motion blur but leaves softness (lens blur, defocus) mostly alone, where a
tuned unsharp mask gains several dB; which mask is right depends on the kind of softness, and a
sharp frame wants none. So after the network, per frame::

    out = x + c0 (y - x) + c1 D0.7 + c2 D1.5 + c3 D2.5,   y = network(x)

``Ds`` is the luma's detail under a Gaussian of sigma ``s`` px (``luma - blur``, added to every
colour). The amounts are a quadratic function of fourteen numbers measured on the frame
(``frame_stats``: how its detail falls off over twelve bands from fine to coarse, a codec's 8 px
grid, how much one direction dominates), fit in closed form on the training samples by ``python -m
train.detail_fit`` with these same functions, and shipped as JSON beside the weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

EDGE = 8  # px of each side left out of the statistics: the blurs' padding is not the picture
TILE = 128  # px: a large frame's statistics are read from a grid of tiles this size
TILES = (2, 3)  # rows, columns of that grid: with their margins a seventh of a 720p frame, spread over all of it
WIDE = 1.0  # px: bands at least this wide are computed at half resolution (``blurs``)
MIN_SIDE = 2 * EDGE + 8  # px: a smaller frame (a thumbnail) is not measured, and gets the network alone
REACH = 3.0  # spreads from the fit's mean: a frame measured farther out is one the fit never saw (the sets' and real clips' lie within 2.2)
KEEP_FROM = 5.0  # px: at periods this long and longer the stage adds detail or leaves it, never takes it away (``never_blurs``)


def gaussian(img: np.ndarray, sigma: float, dst: np.ndarray | None = None) -> np.ndarray:
    """``img`` (H, W) uint8 or float32 under a Gaussian of ``sigma`` px, float32: taps to 3
    sigma, edges mirrored without repeating the edge pixel."""
    radius = max(1, int(3 * sigma + 0.5))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    return cv2.sepFilter2D(img, cv2.CV_32F, k, k, dst=dst, borderType=cv2.BORDER_REFLECT_101)


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float32: OpenCV's 8-bit luma (BT.601), in grey levels. Whole
    grey levels, because the 8-bit conversion is one fast pass where a float one is several."""
    return cv2.multiply(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.0, dtype=cv2.CV_32F)


def wide_sigma(sigma: float) -> float:
    """The Gaussian at half resolution that, between ``cv2.pyrDown`` and ``cv2.pyrUp`` (a
    5-tap Gaussian each, about 2 px² of blur between them), blurs about as much as ``sigma`` at
    full resolution; 0 where those two blur enough on their own."""
    extra = (sigma * sigma - 2.0) / 4
    return float(np.sqrt(extra)) if extra > 0.0625 else 0.0


def blurs(lum: np.ndarray, bands: tuple[float, ...]) -> list[np.ndarray]:
    """The luma (H, W) float32 under each band's blur (the band is ``lum - blur``): the one
    definition the fit and the product share (``DetailStage.add_bands`` computes the same sum).
    Bands narrower than ``WIDE`` are Gaussians at full resolution; wider ones are computed at
    half resolution between ``cv2.pyrDown`` and ``cv2.pyrUp``: a quarter of the pixels, and
    within 0.02 dB on set 4 of full-resolution Gaussians (bilinear halving and enlarging lost 0.2)."""
    h, w = lum.shape
    small = cv2.pyrDown(lum) if any(s >= WIDE for s in bands) else None

    def wide(s: float) -> np.ndarray:
        sw = wide_sigma(s)
        return cv2.pyrUp(gaussian(small, sw) if sw else small, dstsize=(w, h))

    return [gaussian(lum, s) if s < WIDE else wide(s) for s in bands]


def terms(x: np.ndarray, y: np.ndarray, bands: tuple[float, ...]) -> list[np.ndarray]:
    """What the stage weighs, in grey levels: the network's correction ``y - x`` (H, W, 3), then
    each band's luma detail (H, W), which is added to every colour."""
    lum = luma(x)
    return [y.astype(np.float32) - x.astype(np.float32), *[lum - b for b in blurs(lum, bands)]]


def tiles(height: int, width: int) -> list[tuple[slice, slice]]:
    """Where a frame's statistics are read: the whole frame, or for a large one a grid of
    ``TILES`` tiles of ``TILE`` px (each with ``EDGE`` px more on every side), spread evenly and
    starting on multiples of 8, so that a codec's block grid falls where it does in the frame.

    >>> len(tiles(320, 320)), len(tiles(720, 1280))
    (1, 6)
    """
    side = TILE + 2 * EDGE
    rows, cols = TILES
    if height < rows * side or width < cols * side:
        return [(slice(None), slice(None))]

    def starts(n: int, total: int) -> list[int]:
        return [(i * (total - side) // (n - 1)) // 8 * 8 for i in range(n)]

    return [(slice(y, y + side), slice(x, x + side)) for y in starts(rows, height) for x in starts(cols, width)]


def frame_stats(rgb: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    """(len(sigmas) + 2,) numbers that tell kinds of softness apart, for one (H, W, 3) uint8 frame.

    The slopes between the log energies (mean |detail|) of neighbouring bands of ``sigmas`` and
    the widest band's level (a Gaussian blur, a disc, an upscale and a sharp frame each fall off
    their own way); the log ratio of the luma steps on a codec's 8 px grid to those elsewhere
    (JPEG and H.264 blocks); and the log ratio of the gradient's two principal energies (motion
    blur smears one direction, lens blur none). Sums run over ``tiles``.
    """
    n = len(sigmas)
    sums = np.zeros(n + 7)  # band energies, then steps: all x, grid x, all y, grid y; then gradient moments
    counts = np.zeros(5)
    for rows, cols in tiles(*rgb.shape[:2]):
        t = luma(rgb[rows, cols]) * np.float32(1 / 255)  # only the pixels read
        inner = t[EDGE:-EDGE, EDGE:-EDGE]
        for i, s in enumerate(sigmas):
            sums[i] += cv2.norm(inner, gaussian(t, s)[EDGE:-EDGE, EDGE:-EDGE], cv2.NORM_L1)
        dx, dy = np.abs(np.diff(t, axis=1)), np.abs(np.diff(t, axis=0))
        sums[n:n + 4] += [dx.sum(dtype=np.float64), dx[:, 7::8].sum(dtype=np.float64), dy.sum(dtype=np.float64), dy[7::8, :].sum(dtype=np.float64)]
        counts[:5] += [inner.size, dx.size, dx[:, 7::8].size, dy.size, dy[7::8, :].size]
        smooth = gaussian(t, 1.0)
        gx = (smooth[:, 2:] - smooth[:, :-2])[1:-1, :]
        gy = (smooth[2:, :] - smooth[:-2, :])[:, 1:-1]
        sums[n + 4:] += [np.dot(gx.ravel(), gx.ravel()), np.dot(gy.ravel(), gy.ravel()), np.dot(gx.ravel(), gy.ravel())]
    energy = np.log(sums[:n] / counts[0] + 1e-4)
    ax, gx_, ay, gy_ = sums[n:n + 4] / counts[1:5]
    grid = max(0.5 * (gx_ / (ax + 1e-6) + gy_ / (ay + 1e-6)), 1e-3)  # a flat frame has no steps at all
    xx, yy, xy = sums[n + 4:]
    mid, root = (xx + yy) / 2, np.sqrt(((xx - yy) / 2) ** 2 + xy**2)
    scale = 1.0 / max(counts[0], 1)  # moments as means per pixel: the scale the 1e-8 guard is meant for
    aniso = np.log((mid + root) * scale + 1e-8) - np.log((mid - root) * scale + 1e-8)
    return np.concatenate([energy[:-1] - energy[1:], energy[-1:], [np.log(grid), aniso]])


def never_blurs(amounts: np.ndarray, bands: tuple[float, ...]) -> np.ndarray:
    """``amounts`` (of the network's correction, then of each band) with the widest band's raised
    just enough that the bands together take no detail away at periods of ``KEEP_FROM`` px and
    longer; amounts that already do not are returned as they are.

    The fit is chosen by PSNR against clean targets. On compressed footage that is not soft (a
    webcam's, a phone's) smoothing the codec's noise raises PSNR, and the fit's bands there sum to
    a blur at every scale: faces came out softer than they went in, and softer still at a higher
    ``--strength``. A sharpener must not blur what people look at; the finest periods, where a
    codec's noise lives, may still be cut. Band ``s`` passes ``1 - exp(-2 pi^2 s^2 f^2)`` of
    frequency ``f``, so the bands' sum passes ``R(f) = sum_k c_k (1 - exp(-2 pi^2 s_k^2 f^2))``;
    raising the widest band (which passes most of every frequency below the cut) by
    ``max(-R / its own response)`` makes ``R >= 0`` there.

    >>> never_blurs(np.array([0.9, -0.3, -0.1, -0.2]), (0.7, 1.5, 2.5)).round(3).tolist()
    [0.9, -0.3, -0.1, 0.181]
    >>> never_blurs(np.array([1.0, -5.0, 4.0, -0.5]), (0.7, 1.5, 2.5)).tolist()  # a soft frame's boost: kept
    [1.0, -5.0, 4.0, -0.5]
    """
    f = np.geomspace(1 / KEEP_FROM / 100, 1 / KEEP_FROM, 64)  # cycles per px, as finely at long periods as at short
    passed = 1 - np.exp(-2 * np.pi**2 * np.square(np.asarray(bands, np.float64))[:, None] * f**2)  # (bands, f)
    response = np.asarray(amounts[1:], np.float64) @ passed
    lift = float(np.max(-response / passed[-1]))
    if lift <= 0:
        return amounts
    out = np.array(amounts, np.float64)
    out[-1] += lift
    return out


def features(stats: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(..., P) a constant, the standardised statistics and their pairwise products."""
    z = (stats - mean) / spread
    i, j = np.triu_indices(z.shape[-1])
    return np.concatenate([np.ones_like(z[..., :1]), z, z[..., i] * z[..., j]], -1)


@dataclass(eq=False)
class DetailStage:
    """A fit: ``weights`` (P, 1 + bands) maps ``features`` of a frame's statistics to its amounts."""

    weights: np.ndarray
    mean: np.ndarray
    spread: np.ndarray
    bands: tuple[float, ...]
    stat_sigmas: tuple[float, ...]
    _work: dict = field(default_factory=dict, compare=False, repr=False)  # frame-sized buffers, per frame size

    def amounts(self, rgb: np.ndarray) -> np.ndarray:
        """(1 + bands,) this frame's amounts: of the network's correction, then of each band.

        A quadratic does not extrapolate: a frame whose statistics lie over ``REACH`` spreads
        from the fit's (a flat frame, a slide of text on white, pure noise), or one under
        ``MIN_SIDE`` a side, gets the network's correction alone (1, 0, 0, ...). The bands never
        take away detail at periods of ``KEEP_FROM`` px and longer (``never_blurs``).
        """
        alone = np.eye(1, 1 + len(self.bands))[0]
        if min(rgb.shape[:2]) < MIN_SIDE:
            return alone
        stats = frame_stats(rgb, self.stat_sigmas)
        if not np.all(np.abs(stats - self.mean) <= REACH * self.spread):
            return alone
        return never_blurs(features(stats, self.mean, self.spread) @ self.weights, self.bands)

    def apply(self, x: np.ndarray, y: np.ndarray, amounts: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """The frame ``x`` and the network's output ``y`` on it (uint8 (H, W, 3), at this
        ``strength``) -> ``x + c0 (y - x) + strength * sum_k c_k band_k``, uint8.

        ``y``'s correction already carries the strength, so the bands are scaled here: the
        stage's whole change is ``strength`` times what it is at 1. (``Sharpener`` has the
        runtime blend ``c0`` into the network's output and calls ``add_bands``.)
        """
        return self.add_bands(x, cv2.addWeighted(x, 1.0 - float(amounts[0]), y, float(amounts[0]), 0.0), amounts[1:], strength)

    def add_bands(self, x: np.ndarray, y: np.ndarray, amounts: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """``y + strength * sum_k c_k band_k`` (bands of ``x``'s luma, on every colour), uint8.

        Frame-sized buffers are kept between calls: allocating them anew cost more than the
        arithmetic.
        """
        c = [strength * float(v) for v in amounts]
        if not any(c):
            return y
        h, w = x.shape[:2]
        work = self._work.get((h, w))
        if work is None:
            self._work.clear()
            work = self._work[(h, w)] = {k: np.empty((h, w), np.float32) for k in ("lum", "add", "tmp", "wide")} | \
                {"gray": np.empty((h, w), np.uint8), "lum8": np.empty((h, w), np.uint8), "lum3": np.empty((h, w, 3), np.uint8)}
        gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY, dst=work["gray"])
        lum, add = cv2.multiply(gray, 1.0, dst=work["lum"], dtype=cv2.CV_32F), work["add"]
        fine = [(a, s) for a, s in zip(c, self.bands) if s < WIDE]
        wide = [(a, s) for a, s in zip(c, self.bands) if s >= WIDE]
        # sum_k c_k (lum - blur_k), each pass over the frame doing as much as it can
        for i, (a, s) in enumerate(fine):
            blur = gaussian(gray, s, dst=work["tmp"])  # from the 8-bit luma: the same numbers, a quarter of the bytes
            if i == 0:
                cv2.addWeighted(lum, sum(c), blur, -a, 0.0, dst=add)
            else:
                cv2.scaleAdd(blur, -a, add, dst=add)
        if not fine:
            cv2.multiply(lum, sum(c), dst=add)
        offset = 128.0  # the 8-bit result carries the bands offset by 128
        if wide:  # summed at half resolution and enlarged once, with the offset: pyrUp is linear
            small = cv2.pyrDown(lum)
            part = np.full_like(small, offset)
            for a, s in wide:
                sw = wide_sigma(s)
                cv2.scaleAdd(gaussian(small, sw) if sw else small, -a, part, dst=part)
            offset = cv2.pyrUp(part, dst=work["wide"], dstsize=(w, h))
        cv2.add(add, offset, dst=work["lum8"], dtype=cv2.CV_8U)
        # the bands in whole grey levels offset by 128, as engine.add_upscaled_residual carries
        # its residual: where they add nothing (a sharp frame) the network's output passes exactly
        return cv2.addWeighted(y, 1.0, cv2.merge([work["lum8"]] * 3, dst=work["lum3"]), 1.0, -128.0)

    def to_json(self, **extra) -> str:
        return json.dumps({"weights": self.weights.tolist(), "mean": self.mean.tolist(), "spread": self.spread.tolist(),
                           "bands": list(self.bands), "stat_sigmas": list(self.stat_sigmas)} | extra, indent=1)


def load_stage(path: str | Path) -> tuple[DetailStage, str | None]:
    """A stage saved by ``DetailStage.to_json`` (numbers only: nothing in it runs), and the
    digest of the weights it was fit on."""
    d = json.loads(Path(path).read_text())
    return DetailStage(np.array(d["weights"], np.float64), np.array(d["mean"], np.float64), np.array(d["spread"], np.float64),
                       tuple(float(s) for s in d["bands"]), tuple(float(s) for s in d["stat_sigmas"])), d.get("digest")

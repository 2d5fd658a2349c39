"""Pure frame functions on uint8 RGB arrays of shape (H, W, 3). No torch here."""

from __future__ import annotations

import math

import cv2
import numpy as np


def unsharp_mask(rgb: np.ndarray, amount: float = 1.0, sigma: float = 1.5) -> np.ndarray:
    """Classical unsharp masking: ``rgb + amount * (rgb - gaussian(rgb))``.

    The baseline every benchmark compares against. It boosts edges that are already there, so it
    helps soft focus but cannot undo motion blur.

    >>> int(unsharp_mask(np.full((4, 4, 3), 128, np.uint8)).max())
    128
    """
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    # addWeighted saturates to uint8 in one pass: (1+a)*x - a*blur
    return cv2.addWeighted(rgb, 1.0 + amount, blurred, -amount, 0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 pictures of one shape (255 is the
    peak). Identical pictures score 100 dB, not infinity, so means over frames stay finite.

    >>> round(psnr(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)), 6)
    0.0
    >>> psnr(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8))
    100.0
    """
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 255**2 * 1e-10)))


def _label(img: np.ndarray, text: str, x0: int = 0) -> None:
    """Draw a small readable label, white with a black outline, at the top-left of the panel
    starting at column ``x0``.

    The text is drawn once, as a mask, and the outline grown from that mask: two ``putText``
    calls of different thickness are placed differently by OpenCV 5 (a ghost letter beside the
    text, no outline on bright frames), one mask is the same on every OpenCV.
    """
    h = img.shape[0]
    scale = max(0.35, h / 900)
    thick = max(1, round(scale * 2))
    org = (max(4, h // 60), max(12, int(28 * scale) + h // 80))
    # Only the label's corner is touched (this runs on every frame): twice the size OpenCV
    # reports, so a font that sets wider still fits.
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    panel = img[: min(h, org[1] + 2 * (base + thick) + 4), x0 : min(img.shape[1], x0 + org[0] + 2 * tw + 8)]
    mask = np.zeros(panel.shape[:2], np.uint8)
    cv2.putText(mask, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * thick + 1, 2 * thick + 1))
    fill = mask.astype(np.float32)[..., None] / 255
    # Saturated, so the anti-aliased edge of a thin small font still gets a solid ring.
    outline = np.minimum(1.0, cv2.dilate(mask, ring).astype(np.float32)[..., None] / 128)
    panel[:] = np.round(panel * (1 - outline) * (1 - fill) + 255 * fill).astype(np.uint8)


def side_by_side(before: np.ndarray, after: np.ndarray, labels: tuple[str, str] | None = ("before", "after")) -> np.ndarray:
    """``before | after`` in one frame twice as wide, with small labels.

    >>> side_by_side(np.zeros((10, 7, 3), np.uint8), np.zeros((10, 7, 3), np.uint8), None).shape
    (10, 14, 3)
    """
    if before.shape != after.shape:
        raise ValueError(f"side_by_side needs equal shapes, got {before.shape} and {after.shape}")
    out = np.concatenate([before, after], axis=1)
    if labels:
        _label(out, labels[0])
        _label(out, labels[1], x0=before.shape[1])
    return out


def upright(rgb: np.ndarray, matrix: list[int] | None) -> np.ndarray:
    """The frame as players show it under its display matrix (9 ints in 16.16 fixed point, as
    FFmpeg stores it; None: as stored), by FFmpeg's own rules: quarter turns, and the flips a
    mirroring camera writes (a plain left-right mirror reads as a half turn by its angle alone).

    >>> f = np.arange(6).reshape(2, 3, 1)
    >>> upright(f, [-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30])[..., 0].tolist()  # mirrored left to right
    [[2, 1, 0], [5, 4, 3]]
    >>> upright(f, [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30])[..., 0].tolist()  # stored turned: shown a quarter turn clockwise
    [[3, 0], [4, 1], [5, 2]]
    """
    if matrix is None:
        return rgb
    m = [v / 65536 for v in matrix]
    s0, s1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if not s0 or not s1:
        return rgb
    theta = round(math.degrees(math.atan2(m[1] / s1, m[0] / s0))) % 360
    if theta == 90:  # FFmpeg's transpose: cclock_flip (a plain transpose) or clock
        out = rgb.transpose(1, 0, 2) if m[3] > 0 else np.rot90(rgb, -1)
    elif theta == 270:  # clock_flip (the other diagonal) or cclock
        out = np.rot90(rgb, -1)[::-1] if m[3] < 0 else np.rot90(rgb, 1)
    elif theta == 180:
        out = rgb[:, ::-1] if m[0] < 0 else rgb
        out = out[::-1] if m[4] < 0 else out
    else:
        out = rgb[::-1] if theta == 0 and m[4] < 0 else rgb
    return np.ascontiguousarray(out)


def swaps_sides(matrix: list[int] | None) -> bool:
    """Whether ``upright`` under this display matrix turns a frame by a quarter (width and height trade places)."""
    return matrix is not None and abs(matrix[1]) > abs(matrix[0])


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Replicate the last row/column so both sides are even, as yuv420p requires."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def draw_hud(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """A copy of the frame with status lines on a dark band at the top-left (the preview's HUD)."""
    out = rgb.copy()
    scale = max(0.4, rgb.shape[0] / 1200)
    step = int(22 * scale / 0.5)
    width = int(max(len(s) for s in lines) * 11 * scale / 0.5) + 12
    band = out[: step * len(lines) + 10, :width]
    band[:] = (band * 0.4).astype(np.uint8)  # darken, don't hide, what is under the text
    for i, text in enumerate(lines):
        cv2.putText(out, text, (6, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out

"""Running an image-to-image network over frames too big for memory: overlapping tiles,
blended across the seams so the result matches one whole-frame pass."""

from __future__ import annotations

from typing import Callable

import torch


def _tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split one axis into tiles: (start, stop) of each tile's input, and the seams (cut
    positions) before and after its own share of the output (-1 at the image border)."""
    if size <= tile:
        return [(0, size, -1, -1)]
    n = -(-size // (tile - 2 * overlap))
    cuts = [round(i * size / n) for i in range(n + 1)]
    return [
        (max(0, cuts[i] - overlap), min(size, cuts[i + 1] + overlap), cuts[i] if i > 0 else -1, cuts[i + 1] if i < n - 1 else -1)
        for i in range(n)
    ]


def _tile_weight(start: int, stop: int, before: int, after: int, overlap: int) -> torch.Tensor:
    """1-D blending weight of one tile: 0 -> 1 over the ``overlap`` pixels centred on the seam
    before it, 1 -> 0 over those centred on the seam after it. The weights of neighbouring
    tiles sum to 1 at every pixel, and each tile's outer ``overlap // 2`` pixels (where its
    borders disturb the result) get weight 0."""
    pos = torch.arange(start, stop, dtype=torch.float64) + 0.5
    w = torch.ones(stop - start, dtype=torch.float64)
    for seam, rising in ((before, True), (after, False)):
        if seam < 0:
            continue
        if overlap == 0:
            ramp = (pos >= seam).double()
        else:
            ramp = ((pos - (seam - overlap // 2)) / overlap).clamp(0, 1)
        w = w * (ramp if rising else 1 - ramp)
    return w


def tiled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = 512, overlap: int = 32) -> torch.Tensor:
    """Run an image-to-image function over overlapping tiles and blend the results.

    For frames too large to process at once. Each tile reaches ``overlap`` pixels beyond its
    own share on every inner side (neighbours share ``2 * overlap`` pixels), and outputs are
    cross-faded linearly over the ``overlap`` pixels centred on each seam. A function whose
    receptive field reaches at most ``overlap // 2`` pixels from the output pixel (a stack of
    convolutions, say) is reproduced exactly; one with global context (Restormer's channel
    attention) is approximated, with seams hidden by the cross-fade.

    Args:
        fn: (N, 3, h, w) -> (N, 3, h, w) for any h, w up to ``tile``.
        x: (N, 3, H, W).
        tile: largest tile side; an image that fits in one tile is passed to ``fn`` whole.
        overlap: see above; ``tile`` must be at least ``4 * overlap``.

    Returns:
        (N, 3, H, W), float32 unless ``fn`` returns float64.

    >>> blur = torch.nn.Conv2d(3, 3, 3, padding=1)
    >>> x = torch.rand(1, 3, 100, 130)
    >>> torch.allclose(tiled_forward(blur, x, tile=64, overlap=8), blur(x), atol=1e-5)
    True
    """
    if overlap < 0 or tile < max(1, 4 * overlap):
        raise ValueError(f"tiled_forward: need tile >= 4 * overlap >= 0, got tile={tile}, overlap={overlap}")
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return fn(x)
    out = None
    for y0, y1, *ycuts in _tile_spans(h, tile, overlap):
        wy = _tile_weight(y0, y1, *ycuts, overlap)
        for x0, x1, *xcuts in _tile_spans(w, tile, overlap):
            wx = _tile_weight(x0, x1, *xcuts, overlap)
            y = fn(x[..., y0:y1, x0:x1])
            if out is None:
                dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
                out = torch.zeros(*y.shape[:-2], h, w, dtype=dtype, device=y.device)
            weight = (wy[:, None] * wx[None, :]).to(out)
            out[..., y0:y1, x0:x1] += y.to(out) * weight
    return out

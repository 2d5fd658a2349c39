"""Running an image-to-image network (torch) over frames too big for memory: overlapping tiles,
blended across the seams so the result matches one whole-frame pass.

Where the tiles go and how each is weighted is ``livesharp.tiling``'s (``tile_spans``,
``tile_weight``), the one definition ``livesharp image`` uses too, with side multiple 1: the
teachers pad for themselves. Only the blend is this module's own, because what it blends differs:
torch tensors, batched and on the teacher's device (CUDA, under autocast), blended in float and
returned unrounded as training targets, into one frame-sized sum, which a teacher's frames
afford. ``livesharp.tiling.tiled`` blends uint8 pictures on the CPU, rounds each pixel once, and
sums by rows to keep a 48-megapixel photo's work space small.
"""

from __future__ import annotations

from typing import Callable

import torch

from livesharp.tiling import tile_spans, tile_weight


def tiled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = 512, overlap: int = 32) -> torch.Tensor:
    """Run an image-to-image function over overlapping tiles and blend the results.

    For frames too large to process at once. Tiles are all of one shape (``tile_spans``), each
    reaching at least ``overlap`` pixels beyond its own share on every inner side (neighbours
    share ``2 * overlap`` pixels or more), and outputs are cross-faded linearly over the
    ``overlap`` pixels centred on each seam (``tile_weight``). A function whose receptive field
    reaches at most ``overlap // 2`` pixels from the output pixel (a stack of convolutions, say)
    is reproduced exactly; one with global context (Restormer's channel attention) is
    approximated, with seams hidden by the cross-fade.

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
    h, w = x.shape[-2:]
    ys, xs = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)  # both check tile >= 4 * overlap
    if len(ys) == len(xs) == 1:
        return fn(x)
    out = None
    for y0, y1, *ycuts in ys:
        wy = torch.from_numpy(tile_weight(y0, y1, *ycuts, overlap))
        for x0, x1, *xcuts in xs:
            wx = torch.from_numpy(tile_weight(x0, x1, *xcuts, overlap))
            y = fn(x[..., y0:y1, x0:x1])
            if out is None:
                dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
                out = torch.zeros(*y.shape[:-2], h, w, dtype=dtype, device=y.device)
            weight = (wy[:, None] * wx[None, :]).to(out)
            out[..., y0:y1, x0:x1] += y.to(out) * weight
    return out

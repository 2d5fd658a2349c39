"""Running a frame network over pictures too large to compute at once: overlapping tiles,
cross-faded across the seams, so memory depends on the tile and not on the picture.

A network's activations take tens of bytes per pixel (the shipped ``tiny`` under OpenVINO:
about 50), so a 48-megapixel photo sent whole took 2-3 GB. Tiles are all of one shape (a
runtime that compiles per shape compiles once), start on the network's side multiple (so
every tile folds its pixels on the grid the whole frame would), and neighbours share
``2 * overlap`` pixels, cross-faded over the ``overlap`` pixels centred on the seam between
them; each tile's outer ``overlap // 2`` pixels, where its border disturbs the network, get
no weight.

A function whose reach is at most ``overlap // 2`` pixels, and which pads its input to
``multiple`` by reflection before anything else (as the networks do), is reproduced exactly:
the last tile of a row or column, shorter than the others by less than ``multiple``, is
reflected out to their length, as that function would pad it anyway. Networks with
global context (the shipped ``tiny``'s channel attention and zero-mean residual average over
the frame) see each tile's averages instead of the frame's: close, not equal
(``tests/livesharp/test_reliability.py`` measures it).

Nothing here imports torch. The teachers' ``train.tiling.tiled_forward`` takes its tiles and
weights from here too, and blends torch tensors its own way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# Rows blended at once: the float work space is CHUNK_ROWS x width x 3 float32.
CHUNK_ROWS = 128


def tile_spans(size: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int, int, int]]:
    """Split one axis into tiles: ``(start, stop, before, after)`` of each, the seams (cut
    positions) before and after its own share of the output (-1 at the picture's border).

    Tiles start on multiples of ``multiple`` and are all as long (the last, which ends at
    ``size``, may be up to ``multiple - 1`` shorter): the shortest length, on that multiple and
    at most ``tile``, that covers the axis with as few tiles as ``tile`` does, so no tile
    computes much more than its share. Neighbours share at least ``2 * overlap``.

    >>> tile_spans(100, 128, 16)
    [(0, 100, -1, -1)]
    >>> tile_spans(300, 128, 32, multiple=32)
    [(0, 128, -1, 96), (64, 192, 96, 160), (128, 256, 160, 224), (192, 300, 224, -1)]
    """
    if overlap < 0 or multiple < 1 or overlap % multiple or tile % multiple or tile < max(1, 4 * overlap):
        grid = f", both multiples of {multiple}" if multiple != 1 else ""
        raise ValueError(f"tile_spans: need tile >= 4 * overlap >= 0{grid}; got tile={tile}, overlap={overlap}")
    if size <= tile:
        return [(0, size, -1, -1)]
    n = -(-(size - 2 * overlap) // (tile - 2 * overlap))
    tile = -(-(size + 2 * overlap * (n - 1)) // (n * multiple)) * multiple
    step, last = tile - 2 * overlap, -(-(size - tile) // multiple) * multiple
    starts = list(range(0, last, step)) + [last]
    spans = []
    for i, start in enumerate(starts):
        stop = size if i == len(starts) - 1 else start + tile
        spans.append([start, stop, -1, -1])
        if i:  # the seam: halfway through what this tile and the one before share
            seam = (start + spans[i - 1][1] + 1) // 2
            spans[i - 1][3] = spans[i][2] = seam
    return [tuple(s) for s in spans]


def tile_weight(start: int, stop: int, before: int, after: int, overlap: int) -> np.ndarray:
    """1-D blending weight of one tile (float64, ``stop - start`` long): 0 -> 1 over the
    ``overlap`` pixels centred on the seam before it, 1 -> 0 over those centred on the seam
    after it. Neighbours' weights sum to 1 at every pixel.

    >>> tile_weight(0, 8, -1, 4, 4).tolist()
    [1.0, 1.0, 0.875, 0.625, 0.375, 0.125, 0.0, 0.0]
    """
    pos = np.arange(start, stop, dtype=np.float64) + 0.5
    w = np.ones(stop - start)
    for seam, rising in ((before, True), (after, False)):
        if seam < 0:
            continue
        ramp = (pos >= seam).astype(np.float64) if overlap == 0 else np.clip((pos - (seam - overlap // 2)) / overlap, 0, 1)
        w *= ramp if rising else 1 - ramp
    return w


def _one_shape(fn, part: np.ndarray, h: int, w: int) -> np.ndarray:
    """``fn(part)``, with a last tile (shorter by less than the multiple) reflected out to the
    others' ``h`` x ``w`` first: the network would pad it so itself, and a runtime that
    compiles per shape then compiles one."""
    ph, pw = h - part.shape[0], w - part.shape[1]
    if not (ph or pw):
        return fn(part)
    return fn(np.pad(part, ((0, ph), (0, pw), (0, 0)), mode="reflect"))[:part.shape[0], :part.shape[1]]


def tiled(fn: Callable[[np.ndarray], np.ndarray], frame: np.ndarray, tile: int, overlap: int, multiple: int = 1) -> np.ndarray:
    """``fn`` over overlapping tiles of ``frame``, the results cross-faded into one frame.

    Args:
        fn: (h, w, C) uint8 -> (h, w, C) uint8, for any h, w up to ``tile``.
        frame: (H, W, C) uint8.
        tile, overlap, multiple: as ``tile_spans`` takes them; ``multiple`` is the side
            multiple the network pads to, so tiles fold as the whole frame does. Where they
            are not multiples of it, ``overlap`` is rounded up and ``tile`` down (to at least
            ``4 * overlap``).

    Returns:
        (H, W, C) uint8: ``fn(frame)`` itself where the frame fits in one tile; else each pixel
        rounded once from the weighted sum of the tiles covering it. ``fn`` then sees tiles of
        one shape. Beside the frame and the result it holds one row of tiles' outputs and
        ``CHUNK_ROWS`` rows of floats.

    >>> f = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    >>> bool((tiled(lambda t: 255 - t, f, tile=128, overlap=32, multiple=32) == 255 - f).all())
    True
    """
    h, w = frame.shape[:2]
    if h <= tile and w <= tile:
        return fn(frame)
    # On the network's grid, whatever its multiple: the overlap up to it, the tile to one.
    overlap = -(-overlap // multiple) * multiple
    tile = max(tile // multiple * multiple, 4 * overlap)
    xs = tile_spans(w, tile, overlap, multiple)
    wxs = [tile_weight(*s, overlap).astype(np.float32)[None, :, None] for s in xs]
    ys = tile_spans(h, tile, overlap, multiple)
    wys = [tile_weight(*s, overlap).astype(np.float32) for s in ys]
    # The rows each row of tiles gives weight to: [first, end).
    reach = [(y0 + int(np.argmax(wy > 0)), y0 + len(wy) - int(np.argmax(wy[::-1] > 0))) for (y0, *_), wy in zip(ys, wys)]
    out = np.empty_like(frame)
    carried, carry = 0, np.zeros((0, w, frame.shape[2]), np.float32)  # sums of rows the next row of tiles adds to
    for k, ((y0, y1, _, _), wy, (first, end)) in enumerate(zip(ys, wys, reach)):
        outs = [_one_shape(fn, frame[y0:y1, x0:x1], ys[0][1], xs[0][1]) for x0, x1, _, _ in xs]
        unfinished = reach[k + 1][0] if k + 1 < len(ys) else end
        kept = []
        for r0 in range(first, end, CHUNK_ROWS):
            r1 = min(r0 + CHUNK_ROWS, end)
            acc = np.zeros((r1 - r0, w, frame.shape[2]), np.float32)
            for (x0, x1, _, _), wx, y in zip(xs, wxs, outs):
                acc[:, x0:x1] += y[r0 - y0:r1 - y0] * (wy[r0 - y0:r1 - y0, None, None] * wx)
            a, b = max(r0, carried), min(r1, carried + len(carry))
            if a < b:
                acc[a - r0:b - r0] += carry[a - carried:b - carried]
            split = min(max(unfinished - r0, 0), r1 - r0)
            out[r0:r0 + split] = np.clip(acc[:split] + 0.5, 0, 255)
            kept.append(acc[split:])
        carried, carry = unfinished, np.concatenate(kept)
    return out

__all__ = ["tile_spans", "tile_weight", "tiled"]

"""Teacher outputs kept on disk, so a 2.2-TMAC teacher runs once per crop, not once per epoch."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import torch

from livesharp.files import atomic_output


class TeacherCache:
    """Teacher outputs on disk, one file per (teacher, source, crop), so the teacher runs once.

    Files are ``root/ab/abcdef....pt`` holding a (3, H, W) uint8 tensor: 8 bits, like the
    frames the teacher saw. Writes go to a temp file in the same folder and are renamed into
    place, so a killed writer never leaves a half entry; an entry that does not load anyway
    (a damaged disk, a foreign file) is deleted with a warning and counts as a miss.

    >>> key = TeacherCache.key("restormer:0123456789ab", "clip.mp4|1234|1700000000", (0, 0, 256, 256))
    >>> TeacherCache(Path("cache")).path(key).parent.name == key[:2]
    True
    """

    VERSION = "livesharp-teacher-cache-v1"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def key(cls, teacher_name: str, source_id: str, crop: tuple[int, int, int, int] | None = None) -> str:
        """sha256 hex of a canonical description; ``crop`` is (top, left, height, width) or None."""
        if crop is not None:
            crop = [int(c) for c in crop]
            if len(crop) != 4:
                raise ValueError(f"crop must be (top, left, height, width), got {crop}")
        canon = json.dumps([cls.VERSION, str(teacher_name), str(source_id), crop], separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def get(self, key: str) -> torch.Tensor | None:
        """The cached output as float32 (3, H, W) in [0, 1], or None on a miss."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
            if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3):
                raise ValueError(f"expected a (3, H, W) uint8 tensor, got {type(t).__name__} {getattr(t, 'shape', '')}")
        except Exception as e:  # truncated zip, garbage, wrong content: all the same, recompute
            warnings.warn(f"teacher cache: dropping damaged entry {path} ({type(e).__name__})", stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        return t.float() / 255

    def put(self, key: str, image: torch.Tensor) -> None:
        """Store a (3, H, W) or (1, 3, H, W) float image in [0, 1] (values outside are clipped)."""
        self._write(key, self._quantize(image))

    def get_or_compute(self, key: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``get(key)``, or compute with ``fn()``, store, and return what was stored: a hit and
        a miss give identical values (both 8-bit)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        q = self._quantize(fn())
        self._write(key, q)
        return q.float() / 255

    def _write(self, key: str, q: torch.Tensor) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            torch.save(q, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a power cut leaves no empty entry

    @staticmethod
    def _quantize(image: torch.Tensor) -> torch.Tensor:
        t = image.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"teacher cache stores (3, H, W) images, got shape {tuple(image.shape)}")
        return (t.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()


def teacher_targets(teacher, cache: TeacherCache, blur: torch.Tensor, sources: list[str]) -> torch.Tensor:
    """Teacher outputs for a (B, T, 3, H, W) batch, from the cache where it has them.

    Frame t of the sample named ``sources[b]`` is keyed ``"{source}|t={t}"``: training,
    ``train.fill_cache`` and ``train.evaluate`` all go through here, so they share entries.
    """
    out = torch.empty_like(blur)
    for b, source in enumerate(sources):
        for t in range(blur.shape[1]):
            key = TeacherCache.key(teacher.name, f"{source}|t={t}")
            out[b, t] = cache.get_or_compute(key, lambda: teacher(blur[b, t][None])[0])
    return out

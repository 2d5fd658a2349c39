"""The engine: the only module that touches tensors at run time.

uint8 RGB frames (H, W, 3) go in, uint8 RGB frames of the same shape come out. On CUDA the
conversion to and from float happens on the GPU (uint8 is a quarter of the bytes to copy), the
network runs in fp16 with channels_last, host buffers are pinned, and there is one copy back and
one synchronisation per batch, never per frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import ops
from .errors import LivesharpError
from .model import VARIANTS, ModelError, Student, load_student

MODELS_DIR = Path(os.environ.get("LIVESHARP_MODELS", Path(__file__).resolve().parent.parent / "models"))
DEFAULT_MODEL = "tiny"
BASELINES = ("unsharp",)


def shipped_weights(name: str) -> Path:
    """Where the trained weights of a named variant live."""
    return MODELS_DIR / f"livesharp-{name}.pt"


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when torch can see a GPU, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LivesharpError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise LivesharpError(f"--device {device}: unknown device; use auto, cpu or cuda")
    return torch.device(device)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_threads(live: bool = False) -> int:
    """Threads for CPU inference.

    File mode batches frames, so on a small machine inference takes every core (2 cores, 720p:
    8.5 FPS with 2 threads, 5.7 with 1). Live mode runs batch 1 beside a capture thread that
    must never stall; there one core stays free (2 cores, 480p: 25 FPS with 1 thread, 21 with 2).
    """
    cores = cpu_cores()
    if live:
        return max(1, cores - 1)
    return cores if cores <= 2 else cores - 1


def open_model(model: str | Path | Student) -> tuple[Student | None, str]:
    """Turn what a user passed as ``--model`` into a network (None for a classical baseline) and a label."""
    if isinstance(model, Student):
        return model, "student"
    name = str(model)
    if name in BASELINES:
        return None, name
    if name in VARIANTS:
        path = shipped_weights(name)
        if not path.is_file():
            raise ModelError(
                f"no trained weights for model {name!r} are installed (looked for {path}); "
                f"pass --model unsharp for the classical baseline, --model PATH for a checkpoint, "
                f"or train one with python -m train.distill"
            )
        return load_student(path), name
    if not Path(name).exists():
        raise ModelError(f"unknown model {name!r}: use one of {', '.join([*VARIANTS, *BASELINES])} or a path to a .pt checkpoint")
    return load_student(name), Path(name).stem


class Sharpener:
    """Sharpen RGB frames with a student network or the unsharp-mask baseline.

    Args:
        model: a variant name (its shipped weights), ``"unsharp"``, a checkpoint path, or a ``Student``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        strength: 0 returns the input, 1 the model's output, up to 2 extrapolates the added detail.
        threads: CPU inference threads; None = ``cpu_threads()``.

    >>> s = Sharpener(model="unsharp", device="cpu")
    >>> s.sharpen(np.zeros((5, 7, 3), np.uint8)).shape
    (5, 7, 3)
    """

    def __init__(self, model: str | Path | Student = DEFAULT_MODEL, device: str = "auto", strength: float = 1.0, threads: int | None = None):
        if not 0.0 <= strength <= 2.0:
            raise LivesharpError(f"--strength {strength}: must be between 0 (off) and 2 (extrapolated detail)")
        self.strength = float(strength)
        self.device = resolve_device(device)
        net, self.name = open_model(model)
        self._threads_before = None
        self._host_in: torch.Tensor | None = None
        self._host_out: torch.Tensor | None = None
        if net is None:
            self.net = None
            return
        net = net.eval().requires_grad_(False)
        if self.device.type == "cuda":
            net = net.to(self.device, dtype=torch.float16, memory_format=torch.channels_last)
            self._done = torch.cuda.Event()
        else:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(threads or cpu_threads())
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    def sharpen(self, rgb: np.ndarray) -> np.ndarray:
        """One frame: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB."""
        return self.sharpen_batch([rgb])[0]

    def sharpen_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Frames of one size, (H, W, 3) uint8 each, sharpened in one batch."""
        if not frames:
            return []
        shape = frames[0].shape
        for f in frames:
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != shape:
                raise ValueError(f"frames must be uint8 arrays of one shape (H, W, 3); got {f.dtype} {f.shape} after {shape}")
        if self.strength == 0.0:
            return [f.copy() for f in frames]
        if self.net is None:
            return [ops.unsharp_mask(f, amount=self.strength) for f in frames]
        with torch.inference_mode():
            if self.device.type == "cuda":
                return self._run_cuda(frames)
            return self._run_cpu(frames)

    def _blend(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y if self.strength == 1.0 else torch.lerp(x, y, self.strength)

    def _run_cpu(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        batch = torch.from_numpy(np.stack(frames))  # N,H,W,C uint8
        x = batch.permute(0, 3, 1, 2).float().div_(255).contiguous(memory_format=torch.channels_last)
        y = self._blend(x, self.net(x))
        out = y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        return list(out)

    def _pinned(self, attr: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Reuse one page-locked buffer per direction; async copies need pinned memory."""
        buf = getattr(self, attr)
        if buf is None or buf.shape != shape:
            buf = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            setattr(self, attr, buf)
        return buf

    def _run_cuda(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        n, (h, w, c) = len(frames), frames[0].shape
        host_in = self._pinned("_host_in", (n, h, w, c))
        np.stack(frames, out=host_in.numpy())
        dev = host_in.to(self.device, non_blocking=True)
        x = dev.permute(0, 3, 1, 2).half().div_(255).contiguous(memory_format=torch.channels_last)
        y = self._blend(x, self.net(x))
        y = y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
        host_out = self._pinned("_host_out", (n, h, w, c))
        host_out.copy_(y, non_blocking=True)
        self._done.record()
        # The one wait per batch: the host buffers are reused, and the caller needs the pixels.
        self._done.synchronize()
        return list(host_out.numpy().copy())

    def close(self) -> None:
        """Give back the CPU thread setting this Sharpener changed."""
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

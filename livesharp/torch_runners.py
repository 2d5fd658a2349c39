"""torch's runners: torch eager on the CPU and on CUDA (``engine.make_runner`` picks them).

Imported only when torch is the backend, so a base install (no torch) never loads it. On CUDA
the conversion to and from float happens on the GPU (uint8 is a quarter of the bytes to copy),
the network runs in fp16 with channels_last, host buffers are pinned, and there is one copy
back and one synchronisation per batch, never per frame.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .model import Student
from .runtimes import Runner, pad_to_min_side


@contextmanager
def torch_threads(n: int | None):
    """torch on ``n`` CPU threads inside the block, and as it was after it (None: as it is).

    torch's thread count is process-wide; a runner that set it for as long as it lived would
    leave it changed for everything else in the process. The CLI's processes run torch on
    nothing else, so there the count is set once and left (the switch back is skipped when
    nothing changes); a program that runs its own torch work between frames keeps its setting.
    """
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchCpuRunner(Runner):
    """torch eager on the CPU, fp32, channels_last, on ``threads`` threads while it computes."""

    name = "torch"
    precision = "fp32"

    def __init__(self, net: Student, threads: int):
        self.net = net.fused().to(memory_format=torch.channels_last)  # the same function, fewer operations
        self.threads = threads
        self.min_side = net.cfg.multiple

    @contextmanager
    def computing(self):
        with torch_threads(self.threads), torch.inference_mode():
            yield

    def upload(self, frames) -> torch.Tensor:
        batch = torch.from_numpy(pad_to_min_side(np.asarray(frames), self.min_side))  # N,H,W,C uint8; a list is stacked here
        return batch.permute(0, 3, 1, 2).float().div_(255).contiguous(memory_format=torch.channels_last)

    def infer(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        y = self.net(x)
        return y if strength == 1.0 else torch.lerp(x, y, strength)

    def download(self, y: torch.Tensor, frames) -> np.ndarray:
        h, w = frames[0].shape[:2]
        return to_uint8_nhwc(y)[:, :h, :w].contiguous().numpy()


class TorchCudaRunner(Runner):
    """torch on a CUDA GPU: fp16 (``precision="auto"``) or fp32, channels_last.

    uint8 crosses the bus (a quarter of float's bytes) through one page-locked host buffer per
    direction, becomes float on the GPU, and comes back with one copy and one synchronisation
    per batch, never per frame.
    """

    name = "torch"

    def __init__(self, net: Student, device: str | torch.device, precision: str = "auto"):
        self.device = torch.device(device)
        self.precision = "fp16" if precision == "auto" else "fp32"
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.net = net.fused().to(device, dtype=self.dtype, memory_format=torch.channels_last)
        self.min_side = net.cfg.multiple
        self._done = torch.cuda.Event()
        self._host_in: torch.Tensor | None = None
        self._host_out: torch.Tensor | None = None

    def computing(self):
        return torch.inference_mode()

    def upload(self, frames) -> torch.Tensor:
        if min(frames[0].shape[:2]) < self.min_side:  # a thumbnail: rare, so stacked twice
            frames = pad_to_min_side(np.stack(frames), self.min_side)
        n, (h, w, c) = len(frames), frames[0].shape
        self._host_in = _pinned(self._host_in, (n, h, w, c))
        np.stack(frames, out=self._host_in.numpy())  # straight into pinned memory, no extra copy
        dev = self._host_in.to(self.device, non_blocking=True)
        return dev.permute(0, 3, 1, 2).to(self.dtype).div_(255).contiguous(memory_format=torch.channels_last)

    def infer(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        y = self.net(x)
        return y if strength == 1.0 else torch.lerp(x, y, strength)

    def download(self, y: torch.Tensor, frames) -> np.ndarray:
        h, w = frames[0].shape[:2]
        y = to_uint8_nhwc(y)[:, :h, :w]
        self._host_out = _pinned(self._host_out, tuple(y.shape))
        self._host_out.copy_(y, non_blocking=True)
        self._done.record()
        # The one wait per batch: the host buffers are reused, and the caller needs the pixels.
        self._done.synchronize()
        return self._host_out.numpy().copy()

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self._host_in = self._host_out = None


def to_uint8_nhwc(y: torch.Tensor) -> torch.Tensor:
    """The network's float (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3), where it is."""
    return y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)


def _pinned(buf: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """Reuse one page-locked buffer while the shape holds; async copies need pinned memory."""
    if buf is None or tuple(buf.shape) != shape:
        buf = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
    return buf

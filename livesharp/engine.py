"""The engine: the only module that touches tensors at run time.

uint8 RGB frames (H, W, 3) go in, uint8 RGB frames of the same shape come out. ``Sharpener``
checks them and holds the strength; a runner computes them, one per way of doing it: the
unsharp baseline, torch on the CPU, torch on CUDA, and the runtimes of ``runtimes.py`` (ONNX
Runtime, OpenVINO), all chosen in ``make_runner``. On CUDA the conversion to and from float
happens on the GPU (uint8 is a quarter of the bytes to copy), the network runs in fp16 with
channels_last, host buffers are pinned, and there is one copy back and one synchronisation per
batch, never per frame.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import ops
from .errors import LivesharpError
from .model import VARIANTS, ModelError, Student, count_macs, load_student
from .runtimes import RUNNERS, Runner, cached_graph, check_precision, choose_backend
from .settings import DEFAULT_MODEL, cpu_threads, shipped_weights

BASELINES = ("unsharp",)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when torch can see a GPU, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LivesharpError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise LivesharpError(f"--device {device}: unknown device; use auto, cpu or cuda")
    return torch.device(device)


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


class UnsharpRunner(Runner):
    """The classical baseline, ``ops.unsharp_mask`` with ``amount=strength``: no network."""

    name = "unsharp"

    def infer(self, frames, strength: float) -> list[np.ndarray]:
        return [ops.unsharp_mask(f, amount=strength) for f in frames]


class TorchCpuRunner(Runner):
    """torch eager on the CPU, fp32, channels_last, on ``threads`` threads while it computes."""

    name = "torch"
    precision = "fp32"

    def __init__(self, net: Student, threads: int):
        self.net = net.to(memory_format=torch.channels_last)
        self.threads = threads

    @contextmanager
    def computing(self):
        with torch_threads(self.threads), torch.inference_mode():
            yield

    def upload(self, frames) -> torch.Tensor:
        batch = torch.from_numpy(np.asarray(frames))  # N,H,W,C uint8; a list is stacked here
        return batch.permute(0, 3, 1, 2).float().div_(255).contiguous(memory_format=torch.channels_last)

    def infer(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        y = self.net(x)
        return y if strength == 1.0 else torch.lerp(x, y, strength)

    def download(self, y: torch.Tensor, frames) -> np.ndarray:
        return to_uint8_nhwc(y).contiguous().numpy()


class TorchCudaRunner(Runner):
    """torch on a CUDA GPU: fp16 (``precision="auto"``) or fp32, channels_last.

    uint8 crosses the bus (a quarter of float's bytes) through one page-locked host buffer per
    direction, becomes float on the GPU, and comes back with one copy and one synchronisation
    per batch, never per frame.
    """

    name = "torch"

    def __init__(self, net: Student, device: torch.device, precision: str = "auto"):
        self.device = device
        self.precision = "fp16" if precision == "auto" else "fp32"
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.net = net.to(device, dtype=self.dtype, memory_format=torch.channels_last)
        self._done = torch.cuda.Event()
        self._host_in: torch.Tensor | None = None
        self._host_out: torch.Tensor | None = None

    def computing(self):
        return torch.inference_mode()

    def upload(self, frames) -> torch.Tensor:
        n, (h, w, c) = len(frames), frames[0].shape
        self._host_in = _pinned(self._host_in, (n, h, w, c))
        np.stack(frames, out=self._host_in.numpy())  # straight into pinned memory, no extra copy
        dev = self._host_in.to(self.device, non_blocking=True)
        return dev.permute(0, 3, 1, 2).to(self.dtype).div_(255).contiguous(memory_format=torch.channels_last)

    def infer(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        y = self.net(x)
        return y if strength == 1.0 else torch.lerp(x, y, strength)

    def download(self, y: torch.Tensor, frames) -> np.ndarray:
        y = to_uint8_nhwc(y)
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


def _check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 2.0:
        raise LivesharpError(f"--strength {strength}: must be between 0 (off) and 2 (extrapolated detail)")
    return float(strength)


def make_runner(net: Student | None, device: torch.device, backend: str = "auto", precision: str = "auto",
                threads: int | None = None, live: bool = False) -> Runner:
    """The one place that decides how frames are computed; arguments as for ``Sharpener``.

    >>> make_runner(None, torch.device("cpu")).name
    'unsharp'
    """
    check_precision(precision)
    if net is None:
        return UnsharpRunner()
    net = net.eval().requires_grad_(False)
    backend = choose_backend(backend, device)
    if backend in RUNNERS:
        return RUNNERS[backend](cached_graph(net), threads or cpu_threads(live, backend), precision, min_side=net.cfg.multiple)
    if device.type == "cuda":
        return TorchCudaRunner(net, device, precision)
    return TorchCpuRunner(net, threads or cpu_threads(live, backend))


class Sharpener:
    """Sharpen RGB frames with a student network or the unsharp-mask baseline.

    It checks frames, holds ``strength`` (which may change between calls) and hands each batch
    to its ``runner`` (see ``make_runner``), which computes it.

    Args:
        model: a variant name (its shipped weights), ``"unsharp"``, a checkpoint path, or a ``Student``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"``, ``"torch"``, ``"onnx"`` (ONNX Runtime) or ``"openvino"``; auto is torch
            on CUDA, and on the CPU the fastest runtime installed (see ``runtimes.choose_backend``).
        strength: 0 returns the input, 1 the model's output, up to 2 extrapolates the added detail.
        threads: CPU inference threads; None = ``cpu_threads(live, backend)``. Under torch they
            apply while a batch is computed (``torch_threads``), not for the Sharpener's life.
        live: a live source (batch 1 beside a capture thread that must not stall): picks the
            default thread count for that, see ``cpu_threads``.
        precision: ``"auto"``: fp16 on CUDA, bf16 under OpenVINO on CPUs with native bf16, else
            fp32; ``"fp32"``: full precision everywhere (the same pictures as torch fp32 on the
            CPU to within one grey level). ``self.precision`` says what was chosen.

    >>> s = Sharpener(model="unsharp", device="cpu")
    >>> s.sharpen(np.zeros((5, 7, 3), np.uint8)).shape
    (5, 7, 3)
    """

    def __init__(self, model: str | Path | Student = DEFAULT_MODEL, device: str = "auto", strength: float = 1.0,
                 threads: int | None = None, backend: str = "auto", precision: str = "auto", live: bool = False):
        self.strength = _check_strength(strength)
        check_precision(precision)
        # The CPU runtimes imply the CPU; "auto" must not pick a GPU they cannot use.
        self.device = resolve_device("cpu" if device == "auto" and backend in RUNNERS else device)
        self.net, self.name = open_model(model)
        self.cfg = None if self.net is None else self.net.cfg
        self.runner = make_runner(self.net, self.device, backend, precision, threads, live)
        self.backend = "none" if self.net is None else self.runner.name
        self.precision = self.runner.precision

    @property
    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per output pixel (0 for the classical baseline)."""
        return 0.0 if self.cfg is None else count_macs(Student(self.cfg), 64, 64) / (64 * 64)

    def sharpen(self, rgb: np.ndarray, strength: float | None = None) -> np.ndarray:
        """One frame: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB."""
        return self.sharpen_batch([rgb], strength)[0]

    def sharpen_batch(self, frames: Sequence[np.ndarray], strength: float | None = None) -> list[np.ndarray]:
        """Frames of one size, (H, W, 3) uint8 each, sharpened in one batch.

        ``strength``: this batch's, instead of ``self.strength`` (a live session's controls
        pass theirs, so no thread writes the Sharpener another one reads).
        """
        self._check(frames)
        if not frames:
            return []
        strength = self.strength if strength is None else _check_strength(strength)
        if strength == 0.0:
            return [f.copy() for f in frames]
        return list(self.runner.run(frames, strength))

    @staticmethod
    def _check(frames: Sequence[np.ndarray]) -> None:
        for f in frames:
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != frames[0].shape:
                raise ValueError(f"frames must be uint8 arrays of one shape (H, W, 3); got {f.dtype} {f.shape} after {frames[0].shape}")

    def warm_up(self, height: int, width: int, runs: int = 2) -> float:
        """Compute frames of this size before the first real one; return the seconds it took.

        The first call at a size pays once for what later calls reuse: OpenVINO compiles a graph
        per frame shape, torch and the runtimes allocate their buffers. A live source does not
        wait for that (a 40 FPS file camera lost its first 11 frames to a 308 ms first call),
        so ``live.run_live`` pays it here, before the first frame is captured. Strength 1, not
        the Sharpener's: at 0 nothing would be computed.
        """
        frames = np.zeros((1, height, width, 3), np.uint8)
        t0 = time.perf_counter()
        for _ in range(runs):
            self.runner.run(frames, 1.0)
        return time.perf_counter() - t0

    def profile(self, frames: Sequence[np.ndarray], repeats: int = 10) -> dict[str, float]:
        """Median milliseconds per batch of ``frames`` for upload, inference and download.

        Each stage is synchronised before its clock stops, so on a GPU the numbers are the
        stages' own, not a queue of asynchronous launches. For ONNX Runtime and OpenVINO the
        float conversions run inside the graph and count as inference; their upload is the
        stacking of frames into one array. The baseline's work all counts as inference.
        """
        self._check(frames)
        r, strength = self.runner, self.strength
        times: dict[str, list[float]] = {"upload_ms": [], "inference_ms": [], "download_ms": []}
        with r.computing():
            for i in range(repeats + 2):  # two warm-up batches: allocation, compilation, caches
                t0 = time.perf_counter()
                x = r.upload(frames)
                r.sync()
                t1 = time.perf_counter()
                y = r.infer(x, strength)
                r.sync()
                t2 = time.perf_counter()
                r.download(y, frames)
                t3 = time.perf_counter()
                if i >= 2:
                    for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                        times[k].append(1000 * dt)
        return {k: float(np.median(v)) for k, v in times.items()}

    def close(self) -> None:
        """Give back what the runner holds (a runtime's session, pinned buffers)."""
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def export_model(model: str | Path | Student, out: str | Path, fmt: str = "onnx", io: str = "float", overwrite: bool = False) -> Path:
    """Export a student for other runtimes: ONNX (``.onnx``) or OpenVINO IR (``.xml`` + ``.bin``).

    The graph has dynamic batch, height and width. ``io="float"`` keeps the torch model's
    interface, (N, 3, H, W) float RGB in [0, 1]; ``io="uint8"`` takes and returns (N, H, W, 3)
    uint8 RGB frames, with the conversions inside the graph.
    """
    from .io import check_output
    from .runtimes import FORMATS, export_onnx, export_openvino

    if fmt not in FORMATS:
        raise LivesharpError(f"--format {fmt}: use {' or '.join(FORMATS)}")
    out = Path(out)
    net, _ = open_model(model)
    if net is None:
        raise ModelError(f"--model {model}: a classical baseline has no network to export; pass tiny, small or a checkpoint")
    src = Path(model) if isinstance(model, (str, Path)) and Path(model).exists() else out.with_suffix(".src")
    check_output(src, out, overwrite, (".onnx",) if fmt == "onnx" else (".xml",))
    if fmt == "onnx":
        return export_onnx(net, out, io=io)
    return export_openvino(net, out, io=io)

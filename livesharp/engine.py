"""The engine: the only module that touches tensors at run time.

uint8 RGB frames (H, W, 3) go in, uint8 RGB frames of the same shape come out. On CUDA the
conversion to and from float happens on the GPU (uint8 is a quarter of the bytes to copy), the
network runs in fp16 with channels_last, host buffers are pinned, and there is one copy back and
one synchronisation per batch, never per frame.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import ops
from .errors import LivesharpError
from .model import VARIANTS, ModelError, Student, count_macs, load_student
from .runtimes import RUNNERS, cached_graph, check_precision, choose_backend
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


class Sharpener:
    """Sharpen RGB frames with a student network or the unsharp-mask baseline.

    Args:
        model: a variant name (its shipped weights), ``"unsharp"``, a checkpoint path, or a ``Student``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"``, ``"torch"``, ``"onnx"`` (ONNX Runtime) or ``"openvino"``; auto is torch
            on CUDA, and on the CPU the fastest runtime installed (see ``runtimes.choose_backend``).
        strength: 0 returns the input, 1 the model's output, up to 2 extrapolates the added detail.
        threads: CPU inference threads; None = ``cpu_threads(live, backend)``.
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
        if not 0.0 <= strength <= 2.0:
            raise LivesharpError(f"--strength {strength}: must be between 0 (off) and 2 (extrapolated detail)")
        check_precision(precision)
        self.precision = "none"
        self.strength = float(strength)
        # The CPU runtimes imply the CPU; "auto" must not pick a GPU they cannot use.
        self.device = resolve_device("cpu" if device == "auto" and backend in RUNNERS else device)
        net, self.name = open_model(model)
        self._threads_before = None
        self._host_in: torch.Tensor | None = None
        self._host_out: torch.Tensor | None = None
        self._runner = None
        self.net = None
        self.cfg = None
        if net is None:
            self.backend = "none"
            return
        net = net.eval().requires_grad_(False)
        self.backend = choose_backend(backend, self.device)
        self.cfg = net.cfg
        if self.backend in RUNNERS:
            self._runner = RUNNERS[self.backend](cached_graph(net), threads or cpu_threads(live, self.backend), precision)
            self._min_side = net.cfg.multiple
            self.precision = self._runner.precision
            return
        self.precision = "fp16" if self.device.type == "cuda" and precision == "auto" else "fp32"
        self._dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if self.device.type == "cuda":
            net = net.to(self.device, dtype=self._dtype, memory_format=torch.channels_last)
            self._done = torch.cuda.Event()
        else:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(threads or cpu_threads(live, self.backend))
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    @property
    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per output pixel (0 for the classical baseline)."""
        return 0.0 if self.cfg is None else count_macs(Student(self.cfg), 64, 64) / (64 * 64)

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
        if self.net is None and self._runner is None:
            return [ops.unsharp_mask(f, amount=self.strength) for f in frames]
        with torch.inference_mode():
            x = self._upload(frames)
            return self._download(frames, x, self._infer(x))

    # The three stages of a batch, kept apart so that ``profile`` can time each one.

    def _upload(self, frames: Sequence[np.ndarray]):
        """uint8 frames -> the network's input, where the network runs."""
        if self._runner is not None:
            batch = np.stack(frames)
            h, w, m = *batch.shape[1:3], self._min_side
            if h < m or w < m:
                # The exported graph reflect-pads, which needs sides of at least m; a thumbnail
                # gets its edge pixels repeated instead, as the torch model does for it.
                batch = np.pad(batch, ((0, 0), (0, max(0, m - h)), (0, max(0, m - w)), (0, 0)), mode="edge")
            return batch
        if self.device.type == "cuda":
            n, (h, w, c) = len(frames), frames[0].shape
            host_in = self._pinned("_host_in", (n, h, w, c))
            np.stack(frames, out=host_in.numpy())
            dev = host_in.to(self.device, non_blocking=True)
            # uint8 crosses the bus (a quarter of float's bytes) and becomes float on the GPU.
            return dev.permute(0, 3, 1, 2).to(self._dtype).div_(255).contiguous(memory_format=torch.channels_last)
        batch = torch.from_numpy(np.stack(frames))  # N,H,W,C uint8
        return batch.permute(0, 3, 1, 2).float().div_(255).contiguous(memory_format=torch.channels_last)

    def _infer(self, x):
        if self._runner is not None:
            return self._runner.run(x, self.strength)  # uint8 frames: conversions and blend run in the graph
        y = self.net(x)
        return y if self.strength == 1.0 else torch.lerp(x, y, self.strength)

    def _download(self, frames: Sequence[np.ndarray], x, y) -> list[np.ndarray]:
        """The network's output -> uint8 frames on the host."""
        if self._runner is not None:
            h, w = frames[0].shape[:2]
            return list(y[:, :h, :w])
        y = y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
        if self.device.type == "cuda":
            host_out = self._pinned("_host_out", tuple(y.shape))
            host_out.copy_(y, non_blocking=True)
            self._done.record()
            # The one wait per batch: the host buffers are reused, and the caller needs the pixels.
            self._done.synchronize()
            return list(host_out.numpy().copy())
        return list(y.contiguous().numpy())

    def _pinned(self, attr: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Reuse one page-locked buffer per direction; async copies need pinned memory."""
        buf = getattr(self, attr)
        if buf is None or buf.shape != shape:
            buf = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            setattr(self, attr, buf)
        return buf

    def profile(self, frames: Sequence[np.ndarray], repeats: int = 10) -> dict[str, float]:
        """Median milliseconds per batch of ``frames`` for upload, inference and download.

        Each stage is synchronised before its clock stops, so on a GPU the numbers are the
        stages' own, not a queue of asynchronous launches. For ONNX Runtime and OpenVINO the
        float conversions run inside the graph and count as inference; their upload is the
        stacking of frames into one array.
        """
        if self.net is None and self._runner is None:
            t = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                self.sharpen_batch(frames)
                t.append(time.perf_counter() - t0)
            return {"upload_ms": 0.0, "inference_ms": 1000 * float(np.median(t)), "download_ms": 0.0}
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        times: dict[str, list[float]] = {"upload_ms": [], "inference_ms": [], "download_ms": []}
        with torch.inference_mode():
            for i in range(repeats + 2):  # two warm-up batches: allocation, compilation, caches
                t0 = time.perf_counter()
                x = self._upload(frames)
                sync()
                t1 = time.perf_counter()
                y = self._infer(x)
                sync()
                t2 = time.perf_counter()
                self._download(frames, x, y)
                t3 = time.perf_counter()
                if i >= 2:
                    for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                        times[k].append(1000 * dt)
        return {k: float(np.median(v)) for k, v in times.items()}

    def close(self) -> None:
        """Give back the CPU thread setting this Sharpener changed, and the runtime's session."""
        if self._runner is not None:
            self._runner.close()
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

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

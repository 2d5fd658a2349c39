"""The engine: uint8 RGB frames (H, W, 3) in, uint8 RGB frames of the same shape out.

``Sharpener`` checks frames and holds the strength; a runner computes them, one per way of
doing it: the unsharp baseline, the runtimes of ``runtimes.py`` (OpenVINO, ONNX Runtime) on an
exported graph, and torch on the CPU or CUDA (``torch_runners.py``), all chosen in
``make_runner``. torch is imported only where it is needed: a checkpoint to load, a torch or
CUDA backend, an export. The shipped model runs on the CPU from its graph, so a base install,
which has no torch, sharpens with it.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from . import ops
from .detail import DetailStage, load_stage
from .errors import LivesharpError, ModelError
from .graph import GraphInfo, checkpoint_digest, read_graph
from .runtimes import RUNNERS, Runner, check_precision, choose_backend, device_type, installed, int8_unavailable, require_torch
from .settings import DEFAULT_MODEL, cpu_streams, cpu_threads, shipped_graph, shipped_stage, shipped_weights

if TYPE_CHECKING:
    import torch

    from .model import Student

BASELINES = ("unsharp",)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when torch can see a GPU, else the CPU. Needs torch (see ``pick_device``)."""
    if device != "auto" and device != "cpu" and not device.startswith("cuda"):
        raise LivesharpError(f"--device {device}: unknown device; use auto, cpu or cuda")
    require_torch(f"--device {device}")
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LivesharpError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); use --device cpu or auto")
    return torch.device(device)


def pick_device(device: str, cpu_only: bool = False) -> str:
    """Where frames are computed, as a name (``cpu``, ``cuda``, ``cuda:1``).

    ``cpu_only``: nothing to run on a GPU (a graph for the CPU runtimes, or a baseline), so
    ``auto`` is the CPU. Without torch there is no GPU to find either; only an explicit
    ``cuda`` then asks for torch (``resolve_device``), and gets the line naming the extra.

    >>> pick_device("cpu"), pick_device("auto", cpu_only=True)
    ('cpu', 'cpu')
    """
    if device == "cpu" or (device == "auto" and (cpu_only or not installed("torch"))):
        return "cpu"
    return str(resolve_device(device))


def gpu_may_be_here() -> bool:
    """Whether torch could find a GPU here, told without importing torch: a CUDA or ROCm driver
    is installed. Asking torch costs its import (seconds, ~700 MB), which a torch that cannot
    load here (an address-space limit, a deleted working directory) turns into a failure."""
    if sys.platform == "darwin":
        return False
    if os.name == "nt":
        return ctypes.util.find_library("nvcuda") is not None
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg"))


def on_cpu_runtime(device: str, backend: str) -> bool:
    """Whether a CPU runtime (OpenVINO, ONNX Runtime) will run the network, told before any model
    or torch loads: asked for, or ``auto`` on the CPU (asked for, or ``auto`` where no GPU
    driver is installed) with a runtime installed.

    >>> on_cpu_runtime("cpu", "openvino"), on_cpu_runtime("cuda", "auto")
    (True, False)
    """
    if backend in RUNNERS:
        return True
    cpu = device == "cpu" or (device == "auto" and not gpu_may_be_here())
    return backend == "auto" and cpu and any(installed(b, export=False) for b in RUNNERS)


def open_model(model: str | Path | Student) -> tuple[Student | None, str]:
    """Turn what a user passed as ``--model`` into a network (None for a classical baseline) and a label.

    Needs torch; ``find_model`` is what ``Sharpener`` uses, which can do without it.
    """
    require_torch(f"--model {model}: a network")
    net, graph, name = find_model(model)
    if net is None and graph is not None:
        raise ModelError(f"--model {model}: {graph.path} is an exported graph; pass the checkpoint (.pt) it was exported from")
    return net, name


def _checkpoint(path: Path) -> tuple[Student, str]:
    require_torch(f"--model {path}: a checkpoint (.pt)")
    from .model import load_student

    return load_student(path), path.stem


def find_model(model: str | Path | Student, graph_will_do: bool = False) -> tuple[Student | None, GraphInfo | None, str]:
    """What ``--model`` names: a network (torch), a graph (no torch), both, or neither (a baseline), and a label.

    A shipped variant is a checkpoint and its graph (``livesharp/weights/livesharp-NAME.pt`` and
    ``.onnx``). ``graph_will_do`` (a CPU runtime will run it, ``on_cpu_runtime``): the graph
    alone, when its metadata's digest is the checkpoint's, read without torch
    (``graph.checkpoint_digest``). Otherwise, with torch installed, both are loaded, the graph
    kept only if it holds these very weights (else the runtimes export the checkpoint again, as
    for any other); without torch the graph alone serves the CPU runtimes. ``PATH.onnx`` is a
    graph of one's own (``livesharp export MODEL PATH.onnx --io uint8``); any other path is a
    checkpoint.

    >>> find_model("unsharp")
    (None, None, 'unsharp')
    """
    if not isinstance(model, (str, Path)):
        return model, None, "student"
    name = str(model)
    if name in BASELINES:
        return None, None, name
    path = Path(name)
    if path.suffix.lower() == ".onnx" and path.is_file():
        return None, read_graph(path), path.stem
    if not path.exists() and path.name == name:  # a plain name: shipped weights?
        pt, onnx = shipped_weights(name), shipped_graph(name)
        graph = read_graph(onnx) if onnx.is_file() else None
        if graph is not None and graph_will_do and pt.is_file() and checkpoint_digest(pt) == graph.digest:
            return None, graph, name  # torch costs seconds and ~700 MB here, and may not load at all
        if pt.is_file() and installed("torch"):
            try:
                from .export import model_digest
                from .model import load_student
            except (ImportError, OSError, MemoryError) as e:
                # Installed but unable to load here (an address-space limit, a deleted working
                # directory, a broken install): the shipped graph needs no torch, so run it.
                why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                if graph is None:
                    raise LivesharpError(f"--model {name}: torch is installed but does not load ({why}); reinstall it, or run a graph") from None
                logging.getLogger("livesharp").warning(f"torch is installed but does not load ({why}); running the shipped graph without it")
                return None, graph, name
            net = load_student(pt)
            if graph is not None and graph.digest != model_digest(net):
                graph = None  # a graph left from other weights: never run it in their name
            return net, graph, name
        if graph is not None:
            return None, graph, name
        if pt.is_file():
            require_torch(f"--model {name}: its checkpoint {pt}, shipped without a graph,")
        if name == DEFAULT_MODEL or (installed("torch") and name in _variants()):
            raise ModelError(
                f"no trained weights for model {name!r} are installed (looked for {pt}); "
                f"pass --model unsharp for the classical baseline, --model PATH for a checkpoint, "
                f"or train one with python -m train.distill"
            )
    if not path.exists():
        names = ", ".join([*(_variants() if installed("torch") else [DEFAULT_MODEL]), *BASELINES])
        if path.suffix or os.sep in name or (os.altsep and os.altsep in name):  # meant as a file
            raise ModelError(f"--model {name}: no such file; check the path (or use one of {names})")
        raise ModelError(f"unknown model {name!r}: use one of {names}, a path to a .onnx graph or to a .pt checkpoint")
    net, stem = _checkpoint(path)
    return net, None, stem


def find_stage(name: str, net: Student | None, graph: GraphInfo | None) -> DetailStage | None:
    """The detail stage shipped for the variant ``name`` (``settings.shipped_stage``), where it
    was fit on the very weights that run (its ``digest``); None where there is none.

    A stage fit on other weights would scale a correction it has never seen, so a file whose
    digest differs is refused with a warning rather than applied.
    """
    path = shipped_stage(name)
    if (net is None and graph is None) or not path.is_file():
        return None
    if graph is not None:
        digest = graph.digest
    else:
        from .export import model_digest

        digest = model_digest(net)
    stage, fit_on = load_stage(path)
    if fit_on != digest:
        logging.getLogger("livesharp").warning(f"{path} was fit on other weights than {name}'s; running without its detail stage")
        return None
    return stage


def _variants() -> list[str]:
    from .model import VARIANTS

    return list(VARIANTS)


class UnsharpRunner(Runner):
    """The classical baseline, ``ops.unsharp_mask`` with ``amount=strength``: no network."""

    name = "unsharp"

    def infer(self, frames, strength: float) -> list[np.ndarray]:
        return [ops.unsharp_mask(f, amount=strength) for f in frames]


def _check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 2.0:
        raise LivesharpError(f"--strength {strength}: must be between 0 (off) and 2 (extrapolated detail)")
    return float(strength)


def make_runner(net: Student | None, device: str | torch.device = "cpu", backend: str = "auto", precision: str = "auto",
                threads: int | None = None, live: bool = False, graph: GraphInfo | None = None) -> Runner:
    """The one place that decides how frames are computed; arguments as for ``Sharpener``.

    ``graph``: the model's uint8-frame graph where one exists (``find_model``); the CPU
    runtimes run it as it is, and export ``net`` into the cache only without one.

    >>> make_runner(None, "cpu").name
    'unsharp'
    """
    check_precision(precision)
    if net is None and graph is None:
        return UnsharpRunner()
    backend = choose_backend(backend, device, export=graph is None)
    if precision == "int8" and backend != "openvino":
        raise int8_unavailable("CUDA" if device_type(device) == "cuda" else backend)
    if backend in RUNNERS:
        if graph is not None:
            path, multiple = graph.path, graph.multiple
        else:
            from .export import cached_graph

            path, multiple = cached_graph(net.eval()), net.cfg.multiple
        return RUNNERS[backend](path, threads or cpu_threads(live, backend), precision, min_side=multiple, streams=cpu_streams(live))
    if net is None:  # torch was asked for (or is all there is), but there is only a graph
        raise LivesharpError(f"{graph.path}: an ONNX graph runs under --backend openvino or onnx, not {backend}; "
                             f"for torch pass the checkpoint (.pt) it was exported from")
    from .torch_runners import TorchCpuRunner, TorchCudaRunner

    net = net.eval().requires_grad_(False)
    if device_type(device) == "cuda":
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
        detail: apply the model's detail stage where it ships one (``livesharp.detail``: per-frame
            amounts of the network's correction and of three luma detail bands, for soft footage).
        detail_every: measure the frame's statistics for the stage's amounts every this many
            frames (1: every frame; a video's neighbouring frames share them, and measuring costs
            about as much as applying).
        precision: ``"auto"``: fp16 on CUDA; under OpenVINO int8 where the CPU has int8 dot
            products and the model ships a checked int8 graph (``livesharp.int8``), else bf16
            on CPUs with native bf16, else fp32; ``"fp32"``: full precision everywhere (the same
            pictures as torch fp32 on the CPU to within one grey level); ``"int8"``: OpenVINO's
            int8 or a ``LivesharpError``. ``self.precision`` says what was chosen.

    >>> s = Sharpener(model="unsharp", device="cpu")
    >>> s.sharpen(np.zeros((5, 7, 3), np.uint8)).shape
    (5, 7, 3)
    """

    def __init__(self, model: str | Path | Student = DEFAULT_MODEL, device: str = "auto", strength: float = 1.0,
                 threads: int | None = None, backend: str = "auto", precision: str = "auto", live: bool = False,
                 detail: bool = True, detail_every: int = 1):
        self.strength = _check_strength(strength)
        check_precision(precision)
        self.net, self.graph, self.name = find_model(model, graph_will_do=on_cpu_runtime(device, backend))
        # The CPU runtimes imply the CPU, and so does a model that is only a graph (or none):
        # "auto" must not pick a GPU they cannot use, nor import torch to look for one.
        self.device = pick_device(device, cpu_only=backend in RUNNERS or self.net is None)
        self.cfg = None if self.net is None else self.net.cfg
        self.runner = make_runner(self.net, self.device, backend, precision, threads, live, graph=self.graph)
        self.backend = "none" if self.net is None and self.graph is None else self.runner.name
        self.stage = find_stage(self.name, self.net, self.graph) if detail else None
        self.detail_every = max(1, int(detail_every))
        self._amounts, self._measured = None, 0  # (frame shape, the stage's amounts), frames since measured
        self._held = None  # amounts of a whole picture computed in tiles (``detail_from``)

    @property
    def precision(self) -> str:
        """The arithmetic the runner uses. Under OpenVINO ``auto`` with an int8 graph it is
        measured at the first frame size met; until then it reads as the float precision."""
        return self.runner.precision

    @property
    def measured(self):
        """``auto``'s timing of int8 against float (``int8.Measured``), where one was taken."""
        return getattr(self.runner, "measured", None)

    @property
    def multiple(self) -> int:
        """The side multiple the network pads frames to (1 for the baseline): tiles start on it,
        so each folds its pixels as the whole frame would (``tiling.tiled``)."""
        return self.runner.min_side

    @property
    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per output pixel (0 for the classical baseline)."""
        if self.cfg is None:
            return 0.0 if self.graph is None else self.graph.macs_per_pixel
        from .model import Student, count_macs

        return count_macs(Student(self.cfg), 64, 64) / (64 * 64)

    def sharpen(self, rgb: np.ndarray, strength: float | None = None, scale: float = 1.0) -> np.ndarray:
        """One frame: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB.

        ``scale`` < 1: the network runs on the frame shrunk by it, and what it added there is
        enlarged and added to the full frame (``add_upscaled_residual``): less detail restored,
        in ``scale``² of the time. 1 is the full-resolution path, exactly.
        """
        if scale == 1.0:
            return self.sharpen_batch([rgb], strength)[0]
        self._check([rgb])
        strength = self.strength if strength is None else _check_strength(strength)
        if strength == 0.0:
            return rgb.copy()
        small = shrink(rgb, scale)
        amounts = self._detail_amounts([rgb])
        out = add_upscaled_residual(rgb, small, self.runner.run([small], strength * _correction(amounts))[0])
        return self._add_bands([rgb], [out], amounts, strength)[0]

    def sharpen_batch(self, frames: Sequence[np.ndarray], strength: float | None = None) -> list[np.ndarray]:
        """Frames of one size, (H, W, 3) uint8 each, sharpened in one batch.

        ``strength``: this batch's, instead of ``self.strength`` (a live session's controls
        pass theirs, so no thread writes the Sharpener another one reads). With a detail stage
        the batch shares one set of its amounts (measured on its first frame when due): a batch
        is consecutive frames of one video, or pass ``detail_every=1`` and one frame at a time.
        """
        self._check(frames)
        if not frames:
            return []
        strength = self.strength if strength is None else _check_strength(strength)
        if strength == 0.0:
            return [f.copy() for f in frames]
        amounts = self._detail_amounts(frames)
        return self._add_bands(frames, list(self.runner.run(frames, strength * _correction(amounts))), amounts, strength)

    def _detail_amounts(self, frames: Sequence[np.ndarray]) -> np.ndarray | None:
        """The detail stage's amounts for this batch: held (``detail_from``), or those last
        measured, measured again on the batch's first frame every ``detail_every`` frames and
        at a new frame size; None without a stage."""
        if self.stage is None:
            return None
        if self._held is not None:
            return self._held
        x = frames[0]
        if self._amounts is None or self._measured >= self.detail_every or self._amounts[0] != x.shape:
            self._amounts, self._measured = (x.shape, self.stage.amounts(x)), 0
        self._measured += len(frames)
        return self._amounts[1]

    def _add_bands(self, frames: Sequence[np.ndarray], outputs: list[np.ndarray], amounts: np.ndarray | None, strength: float) -> list[np.ndarray]:
        """The stage's detail bands on the network's outputs (which carry its first amount already)."""
        if amounts is None:
            return outputs
        return [self.stage.add_bands(x, y, amounts[1:], strength) for x, y in zip(frames, outputs)]

    @contextlib.contextmanager
    def detail_from(self, rgb: np.ndarray):
        """Within this block, the detail stage uses the amounts of the whole picture ``rgb``,
        whatever part of it a call computes: tiles of one picture are sharpened alike."""
        with self._hold(None if self.stage is None else self.stage.amounts(rgb)):
            yield self

    @contextlib.contextmanager
    def timing(self):
        """Within this block the detail stage does its full work on any frame: warm-up and
        calibration frames are blank, which it would leave to the network alone, so their
        times would leave it out and its buffers would wait for the first real frame."""
        with self._hold(None if self.stage is None else np.ones(1 + len(self.stage.bands))):
            yield self

    @contextlib.contextmanager
    def _hold(self, amounts: np.ndarray | None):
        held, self._held = self._held, amounts
        try:
            yield
        finally:
            self._held = held

    @staticmethod
    def _check(frames: Sequence[np.ndarray]) -> None:
        for f in frames:
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != frames[0].shape:
                raise ValueError(f"frames must be uint8 arrays of one shape (H, W, 3); got {f.dtype} {f.shape} after {frames[0].shape}")

    def reading_ms(self, height: int, width: int, runs: int = 3) -> float:
        """Milliseconds a frame of this size pays for the detail stage's statistics, which are
        read every ``detail_every`` frames (at any scale) and so shared out over them; 0
        without a stage. (``timing`` holds the amounts, so ``sharpen`` there leaves this out.)"""
        if self.stage is None:
            return 0.0
        frame = np.zeros((height, width, 3), np.uint8)
        took = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.stage.amounts(frame)
            took.append(1000 * (time.perf_counter() - t0))
        return float(np.median(took)) / self.detail_every

    def warm_up(self, height: int, width: int, runs: int = 2, scale: float = 1.0) -> float:
        """Compute frames of this size before the first real one; return the seconds it took.

        The first call at a size pays once for what later calls reuse: OpenVINO compiles a graph
        per frame shape, torch and the runtimes allocate their buffers. A live source does not
        wait for that (a 40 FPS file camera lost its first 11 frames to a 308 ms first call),
        so ``live.run_live`` pays it here, before the first frame is captured. Strength 1, not
        the Sharpener's: at 0 nothing would be computed. ``scale``: as ``sharpen`` computes it.
        """
        frame = np.zeros((height, width, 3), np.uint8)
        t0 = time.perf_counter()
        with self.timing():
            for _ in range(runs):
                if scale == 1.0 and self.stage is None:  # the runner itself, as before scales existed
                    self.runner.run(frame[None], 1.0)
                else:
                    self.sharpen(frame, 1.0, scale)
        return time.perf_counter() - t0

    def profile(self, frames: Sequence[np.ndarray], repeats: int = 10) -> dict[str, float]:
        """Median milliseconds per batch of ``frames`` for upload, inference and download, and
        for the detail stage (``detail_ms``: its statistics measured on every frame) where there is one.

        Each stage is synchronised before its clock stops, so on a GPU the numbers are the
        stages' own, not a queue of asynchronous launches. For ONNX Runtime and OpenVINO the
        float conversions run inside the graph and count as inference; their upload is the
        stacking of frames into one array. The baseline's work all counts as inference.
        """
        self._check(frames)
        r, strength = self.runner, self.strength
        times: dict[str, list[float]] = {"upload_ms": [], "inference_ms": [], "download_ms": []} | ({"detail_ms": []} if self.stage else {})
        with r.computing():
            for i in range(repeats + 2):  # two warm-up batches: allocation, compilation, caches
                t0 = time.perf_counter()
                x = r.upload(frames)
                r.sync()
                t1 = time.perf_counter()
                y = r.infer(x, strength)
                r.sync()
                t2 = time.perf_counter()
                out = r.download(y, frames)
                t3 = time.perf_counter()
                if self.stage:  # as sharpen runs it (the first amount is blended in the graph), measured on every frame
                    for f, o in zip(frames, out):
                        self.stage.add_bands(f, o, self.stage.amounts(f)[1:], strength)
                t4 = time.perf_counter()
                if i >= 2:
                    for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                        times[k].append(1000 * dt)
        return {k: float(np.median(v)) for k, v in times.items()}

    def close(self) -> None:
        """Give back what the runner holds (a runtime's session, pinned buffers)."""
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _correction(amounts: np.ndarray | None) -> float:
    """How much of the network's correction the detail stage keeps (its first amount): the
    runtimes blend by strength inside the graph, so it costs nothing there."""
    return 1.0 if amounts is None else float(amounts[0])


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The (height, width) a frame is computed at under ``scale``, at least 1 pixel each way.

    >>> scaled_size(720, 1280, 0.75), scaled_size(720, 1280, 0.5)
    ((540, 960), (360, 640))
    """
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink(rgb: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, 3) uint8 -> the frame at ``scaled_size``. Halving averages 2x2 blocks (OpenCV's
    area path for whole ratios is as fast as bilinear); other ratios are bilinear, because the
    area path for them took 12 ms at 720p -> 0.75 on 2 cores against 2.8 ms."""
    h, w = scaled_size(*rgb.shape[:2], scale)
    whole = rgb.shape[0] % h == 0 and rgb.shape[1] % w == 0
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if whole else cv2.INTER_LINEAR)


def add_upscaled_residual(frame: np.ndarray, small_in: np.ndarray, small_out: np.ndarray) -> np.ndarray:
    """``frame`` plus what the network added at low resolution (``small_out - small_in``),
    enlarged bilinearly to the frame's size; uint8 (H, W, 3) in and out.

    Detail the network did not touch is the frame's own, at full resolution: where the residual
    is zero the frame comes out unchanged. Three OpenCV passes in uint8 (3-4 ms at 720p from
    0.5 on 2 AVX2 cores, 5-8 ms from 0.75): the residual is carried offset by 128, so it saturates at ±127 grey levels,
    more than a sharpening step adds; int16 took twice as long (20 ms at 0.75).

    >>> f = np.full((4, 6, 3), 100, np.uint8)
    >>> small = f[::2, ::2].copy()
    >>> bool((add_upscaled_residual(f, small, small) == f).all())
    True
    """
    h, w = frame.shape[:2]
    residual = cv2.addWeighted(small_out, 1.0, small_in, -1.0, 128.0)  # saturating: out - in + 128
    residual = cv2.resize(residual, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(frame, 1.0, residual, 1.0, -128.0)


def export_model(model: str | Path | Student, out: str | Path, fmt: str = "onnx", io: str = "float", overwrite: bool = False) -> Path:
    """Export a student for other runtimes: ONNX (``.onnx``) or OpenVINO IR (``.xml`` + ``.bin``).

    The graph has dynamic batch, height and width. ``io="float"`` keeps the torch model's
    interface, (N, 3, H, W) float RGB in [0, 1]; ``io="uint8"`` takes and returns (N, H, W, 3)
    uint8 RGB frames, with the conversions inside the graph.
    """
    from .io import check_output
    from .runtimes import FORMATS

    if fmt not in FORMATS:
        raise LivesharpError(f"--format {fmt}: use {' or '.join(FORMATS)}")
    if str(model) in BASELINES:
        raise ModelError(f"--model {model}: a classical baseline has no network to export; pass tiny, small or a checkpoint")
    require_torch("livesharp export")
    from .export import export_onnx, export_openvino

    out = Path(out)
    net, _ = open_model(model)
    src = Path(model) if isinstance(model, (str, Path)) and Path(model).exists() else out.with_suffix(".src")
    check_output(src, out, overwrite, (".onnx",) if fmt == "onnx" else (".xml",))
    if fmt == "onnx":
        return export_onnx(net, out, io=io)
    return export_openvino(net, out, io=io)

"""Inference runtimes beyond torch: ONNX Runtime and OpenVINO, and the exported graphs they run.

On a laptop CPU the runtime matters as much as the network: the same student runs faster under
OpenVINO or ONNX Runtime than under torch eager (numbers in benchmarks/README.md). Both are
optional extras; ``auto`` uses the best one installed and falls back to torch.

The graphs the runtimes load are exported once per model and cached, keyed by a hash of the
weights and architecture, so only the first run with a new checkpoint pays for the export. Two
first runs at once export it once (the second waits for the first, then finds it), and a cache
folder that cannot be written (a read-only home) is replaced, with one warning, by a temporary
one for the process.
The cached graphs take uint8 RGB frames (N, H, W, 3) and return the same: the conversion to
float and back runs inside the runtime, fused with the network, instead of in numpy.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import LivesharpError
from .files import atomic_output
from .model import Student

BACKENDS = ("torch", "onnx", "openvino")
# auto: the fastest arithmetic the device does well (fp16 on CUDA, bf16 under OpenVINO on CPUs
# with native bf16 such as Xeons with AMX); fp32: full precision everywhere.
PRECISIONS = ("auto", "fp32")
# The extra that installs each optional runtime, and the modules it needs: the runtime, and
# onnx, which torch's exporter needs to write the graph the runtime loads.
EXTRAS = {"onnx": (("onnxruntime", "onnx"), "livesharp[onnx]"), "openvino": (("openvino", "onnx"), "livesharp[openvino]")}
FORMATS = ("onnx", "openvino")
OPSET = 17
# Part of the cache key: bump it when the exported graph's interface or contents change, so
# graphs exported by an older livesharp are not loaded by a newer one.
GRAPH_VERSION = 2

log = logging.getLogger("livesharp")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: see _exclusive
    fcntl = None


def installed(backend: str) -> bool:
    """Whether a backend's runtime can be imported here (torch always can)."""
    if backend == "torch":
        return True
    return all(importlib.util.find_spec(m) is not None for m in EXTRAS[backend][0])


def choose_backend(requested: str, device: torch.device) -> str:
    """``auto``: torch on CUDA; on the CPU OpenVINO, else ONNX Runtime, else torch.

    An explicitly requested runtime that is missing is an error naming the extra to install,
    never a silent fallback: a user who asked for OpenVINO should know they are not getting it.
    """
    if requested == "auto":
        if device.type == "cuda":
            return "torch"
        return next(b for b in ("openvino", "onnx", "torch") if installed(b))
    if requested not in BACKENDS:
        raise LivesharpError(f"--backend {requested}: unknown backend; use auto, {', '.join(BACKENDS)}")
    if requested != "torch":
        if device.type != "cpu":
            raise LivesharpError(f"--backend {requested} runs on the CPU; use --device cpu, or --backend torch for {device.type}")
        if not installed(requested):
            modules, extra = EXTRAS[requested]
            missing = " and ".join(m for m in modules if importlib.util.find_spec(m) is None)
            raise LivesharpError(f"--backend {requested}: {missing} not installed; pip install \"{extra}\", or use --backend auto")
    return requested


def model_digest(net: Student) -> str:
    """A short hash of a student's architecture and weights: the key of its exported graphs."""
    h = hashlib.sha256(json.dumps(asdict(net.cfg), sort_keys=True).encode())
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _configured_cache() -> Path:
    if os.environ.get("LIVESHARP_CACHE"):
        return Path(os.environ["LIVESHARP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "livesharp"


# A configured cache folder that this process found it cannot write -> the temporary folder
# standing in for it until the process exits. Keyed by the folder, so a program that points
# LIVESHARP_CACHE elsewhere afterwards is obeyed.
_STAND_INS: dict[Path, Path] = {}


def cache_dir() -> Path:
    """``$LIVESHARP_CACHE``, else ``$XDG_CACHE_HOME/livesharp``, else ``~/.cache/livesharp``;
    read on every call. Where that folder proved unwritable, the temporary one standing in for
    it in this process (see ``writable_cache_dir``)."""
    configured = _configured_cache()
    return _STAND_INS.get(configured, configured)


def writable_cache_dir() -> Path:
    """``cache_dir()``, created and checked writable; else a temporary cache for this process.

    A read-only home or cache folder must not stop livesharp: the graphs are exported into a
    private temporary folder instead (removed at exit, so the next run exports again), with one
    warning line that says how to keep them. Only when no temporary folder can be made either
    is it an error.
    """
    configured = _configured_cache()
    folder = _STAND_INS.get(configured, configured)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # mkdir succeeds on a read-only folder that exists
            pass
        return folder
    except OSError as e:
        if configured in _STAND_INS:  # the stand-in itself went away: nothing left to try
            raise LivesharpError(f"cannot write the exported model to {folder} ({e.strerror}); set LIVESHARP_CACHE to a writable folder") from None
        why = e.strerror or str(e)
    try:
        stand_in = Path(tempfile.mkdtemp(prefix="livesharp-cache-"))
    except OSError as e:
        raise LivesharpError(f"cannot write the exported model to {folder} ({why}), nor to a temporary folder ({e.strerror}); "
                             f"set LIVESHARP_CACHE to a writable folder") from None
    atexit.register(shutil.rmtree, stand_in, ignore_errors=True)
    _STAND_INS[configured] = stand_in
    log.warning(f"cannot write the cache folder {folder} ({why}): using a temporary one for this run, so the model is "
                f"exported again next time; set LIVESHARP_CACHE to a writable folder to keep it")
    return stand_in


@contextlib.contextmanager
def _exclusive(folder: Path):
    """One process at a time exports into ``folder``: two first runs started at once export a
    model once, the second waiting and then finding the graph (OS lock on ``export.lock``,
    released when the file closes, so a killed holder never leaves the cache locked).

    Without fcntl (Windows) there is no lock: both export, each into its own temporary file
    (``atomic_output``), and the second rename puts the same graph in place again.
    """
    with open(folder / "export.lock", "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Uint8Frames(nn.Module):
    """The student with frame I/O: uint8 RGB (N, H, W, 3) in, uint8 RGB (N, H, W, 3) out.

    ``strength`` (a float32 of shape (1,)) blends input and output before rounding, exactly as
    the torch path does: 0 is the input, 1 the model, 2 doubles the detail it adds.
    """

    def __init__(self, net: Student):
        super().__init__()
        self.net = net

    def forward(self, frames, strength):
        x = frames.permute(0, 3, 1, 2).float() / 255
        y = torch.lerp(x, self.net(x), strength).clamp(0, 1) * 255
        return y.round().to(torch.uint8).permute(0, 2, 3, 1)


def export_onnx(net: Student, path: str | Path, io: str = "float") -> Path:
    """Write ``net`` as an ONNX graph with dynamic batch, height and width (atomically).

    ``io="float"``: input and output (N, 3, H, W) float32 RGB in [0, 1], like the torch model.
    ``io="uint8"``: (N, H, W, 3) uint8 RGB frames in and out, conversions inside the graph, and
    a second input ``strength`` (float32, shape (1,): 1 is the model, see ``Uint8Frames``).
    Sides must be at least ``net.cfg.multiple`` pixels (the graph reflect-pads to that multiple).
    """
    if io not in ("float", "uint8"):
        raise LivesharpError(f"--io {io}: use float or uint8")
    path = Path(path)
    net = net.eval().cpu()
    # Trace at a size that needs padding on both sides, so the padding ops are in the graph.
    m = net.cfg.multiple
    h, w = 2 * m + 3, 3 * m + 5
    if io == "float":
        module, axes, names = net, {0: "batch", 2: "height", 3: "width"}, ["input"]
        example = (torch.rand(1, 3, h, w),)
    else:
        module, axes, names = Uint8Frames(net), {0: "batch", 1: "height", 2: "width"}, ["input", "strength"]
        example = (torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8), torch.ones(1))
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the parity tests are the check
        torch.onnx.export(module, example, str(tmp), input_names=names, output_names=["output"],
                          dynamic_axes={"input": axes, "output": axes}, opset_version=OPSET, dynamo=False)
    return path


def export_openvino(net: Student, path: str | Path, io: str = "float") -> Path:
    """Write ``net`` as OpenVINO IR: ``path`` (.xml) and the weights beside it (.bin)."""
    if not installed("openvino"):
        raise LivesharpError('--format openvino: openvino is not installed; pip install "livesharp[openvino]"')
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":
        raise LivesharpError(f"{path}: OpenVINO IR is written as NAME.xml (+ NAME.bin); give a path ending in .xml")
    with tempfile.TemporaryDirectory() as d:
        onnx_path = export_onnx(net, Path(d) / "model.onnx", io=io)
        model = ov.convert_model(str(onnx_path))
        # OpenVINO writes the weights beside the .xml under its stem: the .bin moves with it.
        with atomic_output(path, companions=(".bin",)) as tmp:
            # Full precision: the IR's weights are the checkpoint's, not rounded to fp16.
            ov.save_model(model, str(tmp), compress_to_fp16=False)
    return path


def cached_graph(net: Student) -> Path:
    """The uint8-frame ONNX graph of ``net`` in the cache, exported on first use.

    A graph already in the cache is used even where the folder is read-only; only an export
    needs it writable (else a temporary cache, see ``writable_cache_dir``).
    """
    name = f"student-{model_digest(net)}-uint8-g{GRAPH_VERSION}.onnx"
    if (cache_dir() / name).is_file():
        return cache_dir() / name
    folder = writable_cache_dir()
    path = folder / name
    try:
        with _exclusive(folder):
            if not path.is_file():  # another process may have exported it while this one waited
                export_onnx(net, path, io="uint8")
    except OSError as e:
        raise LivesharpError(f"cannot write the exported model to {folder} ({e.strerror}); set LIVESHARP_CACHE to a writable folder") from None
    return path


class Runner(abc.ABC):
    """One way of computing frames. Every backend is one (``engine.make_runner`` picks it).

    ``run(frames, strength)`` takes N uint8 RGB frames of one shape, as an (N, H, W, 3) array or
    a sequence of (H, W, 3) arrays, and returns N sharpened frames of that shape, in one of the
    same two forms. ``strength`` blends input and output as ``Sharpener`` documents. ``name`` is
    the backend, ``precision`` the arithmetic it chose, ``close()`` gives back what it holds.

    ``run`` is ``download(infer(upload(frames), strength), frames)``; the steps are separate so
    that ``Sharpener.profile`` can time each, with ``sync()`` waiting for a device to finish.
    ``computing()`` is the context every step runs in (torch's inference mode and threads).
    """

    name = "none"
    precision = "none"

    def computing(self):
        return contextlib.nullcontext()

    def upload(self, frames):
        return frames

    @abc.abstractmethod
    def infer(self, x, strength: float):
        """The computation itself, on what ``upload`` returned."""

    def download(self, y, frames):
        return y

    def sync(self) -> None:
        pass

    def run(self, frames, strength: float = 1.0):
        with self.computing():
            return self.download(self.infer(self.upload(frames), strength), frames)

    def close(self) -> None:
        pass


class GraphRunner(Runner):
    """A runtime that runs the exported uint8-frame graph (``cached_graph``) on the CPU.

    The graph reflect-pads to the network's multiple, which needs sides of at least that
    (``min_side``); a thumbnail gets its edge pixels repeated up to it instead, as the torch
    model does for it, and the result is cropped back.
    """

    min_side = 1

    def upload(self, frames) -> np.ndarray:
        batch = np.asarray(frames)  # a list of frames is stacked here, an array is taken as it is
        h, w, m = *batch.shape[1:3], self.min_side
        if h < m or w < m:
            batch = np.pad(batch, ((0, 0), (0, max(0, m - h)), (0, max(0, m - w)), (0, 0)), mode="edge")
        return batch

    def download(self, y: np.ndarray, frames) -> np.ndarray:
        h, w = frames[0].shape[:2]
        return y[:, :h, :w]


class OnnxRunner(GraphRunner):
    """ONNX Runtime on the CPU. ``run`` maps uint8 (N, H, W, 3) frames to sharpened ones."""

    name = "onnx"
    precision = "fp32"  # the exported graph is f32, and ONNX Runtime runs it as it is

    def __init__(self, graph: Path, threads: int, precision: str = "auto", min_side: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads would take the cores the decoder and encoder need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        self.min_side = min_side

    def infer(self, frames: np.ndarray, strength: float) -> np.ndarray:
        return self.session.run(None, {"input": frames, "strength": np.array([strength], np.float32)})[0]

    def close(self) -> None:
        self.session = None


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise LivesharpError(f"--precision {precision}: use {' or '.join(PRECISIONS)}")


def openvino_precision(core, precision: str) -> str:
    """What ``precision`` (``auto`` or ``fp32``) means under OpenVINO on this CPU: bf16 or fp32.

    ``auto`` takes bf16 where the CPU computes it natively: on a 2-core Xeon with AMX that ran
    the tiny student at 720p 1.23x faster than f32 (benchmarks/README.md), within two grey
    levels of it. Elsewhere bf16 would be emulated, so fp32.
    """
    check_precision(precision)
    if precision == "auto" and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "bf16"
    return "fp32"


class OpenVinoRunner(GraphRunner):
    """OpenVINO on the CPU, with the graph compiled for each frame shape it meets.

    A graph compiled for one static shape ran twice as fast as the dynamic one (1280x720 on 2
    cores: 22.5 vs 11.3 FPS), and a video has one frame size, so each (batch, height, width)
    is compiled on first sight (about a second; OpenVINO's cache makes later starts quicker).
    Precision is set explicitly (see ``openvino_precision``) rather than left to OpenVINO, so
    ``fp32`` really is f32 on every CPU.
    """

    name = "openvino"
    MAX_SHAPES = 8  # file mode meets batches of 1..--batch frames; beyond that, forget the oldest

    def __init__(self, graph: Path, threads: int, precision: str = "auto", min_side: int = 1):
        import openvino as ov

        self.core = ov.Core()
        # Compiled blobs go beside the graphs; a read-only cache gets the temporary stand-in.
        self.core.set_property({"CACHE_DIR": str(writable_cache_dir() / "openvino")})
        self.graph = str(graph)
        self.precision = openvino_precision(self.core, precision)
        hint = {"fp32": "f32", "bf16": "bf16"}[self.precision]  # OpenVINO's names for them
        self.config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        self.requests: dict[tuple[int, ...], object] = {}
        self.min_side = min_side

    def _request(self, shape: tuple[int, ...]):
        if shape not in self.requests:
            model = self.core.read_model(self.graph)
            model.reshape({"input": list(shape), "strength": [1]})
            if len(self.requests) >= self.MAX_SHAPES:
                self.requests.pop(next(iter(self.requests)))
            self.requests[shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        return self.requests[shape]

    def infer(self, frames: np.ndarray, strength: float) -> np.ndarray:
        # Copy out: the request's output buffer is reused by its next call.
        return self._request(frames.shape).infer({"input": frames, "strength": np.array([strength], np.float32)})[0].copy()

    def close(self) -> None:
        self.requests.clear()


RUNNERS = {"onnx": OnnxRunner, "openvino": OpenVinoRunner}


__all__ = ["BACKENDS", "PRECISIONS", "FORMATS", "check_precision", "openvino_precision", "installed", "choose_backend", "model_digest", "cache_dir", "writable_cache_dir", "export_onnx", "export_openvino", "cached_graph", "Runner", "GraphRunner", "OnnxRunner", "OpenVinoRunner"]

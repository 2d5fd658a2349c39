"""Inference runtimes beyond torch: ONNX Runtime and OpenVINO, and which backend runs a model.

On a laptop CPU the runtime matters as much as the network: the same student runs faster under
OpenVINO or ONNX Runtime than under torch eager (numbers in benchmarks/README.md). OpenVINO is
in the base install; ``auto`` uses the best runtime installed and falls back to torch.

Nothing here imports torch: the graphs take uint8 RGB frames (N, H, W, 3) and return the same
(the conversion to float and back runs inside the runtime, fused with the network), and each
describes itself in its metadata (``livesharp.graph``), so a base install runs the graph shipped
in ``livesharp/weights/`` with no torch at all. A checkpoint of one's own is exported
(``livesharp.export``, which needs torch) into the cache folder first.
"""

from __future__ import annotations

import abc
import contextlib
import importlib.util
from pathlib import Path

import numpy as np

from . import int8
from .errors import LivesharpError, allocation_failed, gpu_out_of_memory, out_of_memory
from .graph import GRAPH_VERSION, openvino, writable_cache_dir
from .int8 import PRECISIONS

BACKENDS = ("torch", "onnx", "openvino")
# What --backend auto takes on the CPU: the first installed (torch on CUDA).
CPU_PREFERENCE = ("openvino", "onnx", "torch")
# The extra that installs each optional runtime, and the modules it needs: the runtime, and
# onnx, which torch's exporter needs to write the graph the runtime loads (running a graph that
# is already written, such as the shipped one, needs the runtime alone).
EXTRAS = {"onnx": (("onnxruntime", "onnx"), "livesharp[onnx]"), "openvino": (("openvino", "onnx"), "livesharp[openvino]")}
TORCH_EXTRA = 'pip install "livesharp[torch]"'
FORMATS = ("onnx", "openvino")


def _needed(backend: str, export: bool) -> tuple[str, ...]:
    runtime, exporter = EXTRAS[backend][0]
    return (runtime, exporter) if export else (runtime,)


def installed(backend: str, export: bool = True) -> bool:
    """Whether ``backend`` can run here: torch importable, or a runtime and (``export``: the
    model is a checkpoint, not yet a graph) the ``onnx`` package torch exports with."""
    if backend == "torch":
        return importlib.util.find_spec("torch") is not None
    return all(importlib.util.find_spec(m) is not None for m in _needed(backend, export))


def require_torch(what: str) -> None:
    """Raise the one line that says ``what`` needs the ``torch`` extra, unless torch is here."""
    if not installed("torch"):
        raise LivesharpError(f"{what} needs torch: {TORCH_EXTRA}")


def device_type(device) -> str:
    """``cpu`` or ``cuda`` for a torch.device or a name such as ``cuda:1``.

    >>> device_type("cuda:1")
    'cuda'
    """
    return device.split(":")[0] if isinstance(device, str) else device.type


def choose_backend(requested: str, device, export: bool = True) -> str:
    """``auto``: torch on CUDA; on the CPU OpenVINO, else ONNX Runtime, else torch.

    ``device``: a torch.device or a name (``cpu``, ``cuda:0``). ``export``: the model is a
    checkpoint that has to be exported before a runtime can run it (False for a graph, such
    as the shipped one, which needs no ``onnx`` package and no torch).
    An explicitly requested runtime that is missing is an error naming the extra to install,
    never a silent fallback: a user who asked for OpenVINO should know they are not getting it.
    """
    kind = device_type(device)
    if requested == "auto":
        if kind == "cuda":
            return "torch"
        found = next((b for b in CPU_PREFERENCE if installed(b, export)), None)
        if found is None:
            raise LivesharpError('no CPU runtime is installed: pip install openvino (or "livesharp[onnx]", or "livesharp[torch]")')
        return found
    if requested not in BACKENDS:
        raise LivesharpError(f"--backend {requested}: unknown backend; use auto, {', '.join(BACKENDS)}")
    if requested == "torch":
        require_torch("--backend torch")
    else:
        if kind != "cpu":
            raise LivesharpError(f"--backend {requested} runs on the CPU; use --device cpu, or --backend torch for {kind}")
        if not installed(requested, export):
            _, extra = EXTRAS[requested]
            missing = " and ".join(m for m in _needed(requested, export) if importlib.util.find_spec(m) is None)
            raise LivesharpError(f"--backend {requested}: {missing} not installed; pip install \"{extra}\", or use --backend auto")
    return requested


class Runner(abc.ABC):
    """One way of computing frames. Every backend is one (``engine.make_runner`` picks it).

    ``run(frames, strength)`` takes N uint8 RGB frames of one shape, as an (N, H, W, 3) array or
    a sequence of (H, W, 3) arrays, and returns N sharpened frames of that shape, in one of the
    same two forms. ``strength`` blends input and output as ``Sharpener`` documents. ``name`` is
    the backend, ``precision`` the arithmetic it chose, ``close()`` gives back what it holds.

    ``run`` is ``download(infer(upload(frames), strength), frames)``; the steps are separate so
    that ``Sharpener.profile`` can time each, with ``sync()`` waiting for a device to finish.
    ``computing()`` is the context every step runs in (torch's inference mode and threads).

    A network's runner gives it no side under ``min_side``, the network's multiple: a smaller
    frame (a thumbnail) is computed as ``pad_to_min_side`` makes it, and cropped back. The
    exported graphs need that (they reflect-pad to the multiple), and torch does the same, so
    every backend computes the same pixels (a zero-mean residual averages the padded frame).
    """

    name = "none"
    precision = "none"
    min_side = 1

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
        try:
            with self.computing():
                return self.download(self.infer(self.upload(frames), strength), frames)
        except Exception as e:
            # A runtime that cannot allocate says so in its own error type (OpenVINO's and
            # torch's RuntimeError, ONNX Runtime's own), found by its message; the rest stay.
            if not allocation_failed(e):
                raise
            h, w = frames[0].shape[:2]
            what = f"compute {w}x{h} frames with {self.name}"
            raise (gpu_out_of_memory(e, what) or out_of_memory(what, "give it smaller frames")) from None

    def close(self) -> None:
        pass


def pad_to_min_side(batch: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W, 3) frames with their edge pixels repeated, bottom and right, until both sides
    are at least ``side``; the same array where they are. Crop back with ``[:, :H, :W]``.

    >>> pad_to_min_side(np.zeros((1, 9, 40, 3), np.uint8), 32).shape
    (1, 32, 40, 3)
    """
    h, w = batch.shape[1:3]
    if h >= side and w >= side:
        return batch
    return np.pad(batch, ((0, 0), (0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="edge")


class GraphRunner(Runner):
    """A runtime that runs the exported uint8-frame graph (``cached_graph``) on the CPU."""

    def upload(self, frames) -> np.ndarray:
        # A list of frames is stacked here, an array is taken as it is, and a live session's one
        # frame is viewed as a batch of one: stacking it would copy 2.7 MB per 720p frame.
        batch = frames[0][None] if isinstance(frames, (list, tuple)) and len(frames) == 1 else np.asarray(frames)
        return pad_to_min_side(batch, self.min_side)

    def download(self, y: np.ndarray, frames) -> np.ndarray:
        h, w = frames[0].shape[:2]
        return y[:, :h, :w]


class OnnxRunner(GraphRunner):
    """ONNX Runtime on the CPU. ``run`` maps uint8 (N, H, W, 3) frames to sharpened ones."""

    name = "onnx"
    precision = "fp32"  # the exported graph is f32, and ONNX Runtime runs it as it is

    def __init__(self, graph: Path, threads: int, precision: str = "auto", min_side: int = 1, streams: int = 1):
        # streams: unused, ONNX Runtime computes a batch as one call on all its threads
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
        raise LivesharpError(f"--precision {precision}: use {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}")


def int8_unavailable(backend: str) -> LivesharpError:
    """The one line for ``--precision int8`` where only OpenVINO's int8 graphs exist."""
    return LivesharpError(f"--precision int8 runs under OpenVINO on the CPU, not {backend}; use --backend openvino, or --precision auto")


class OpenVinoRunner(GraphRunner):
    """OpenVINO on the CPU, with the graph compiled for each frame shape it meets.

    A graph compiled for one static shape ran twice as fast as the dynamic one (1280x720 on 2
    cores: 22.5 vs 11.3 FPS), and a video has one frame size, so each (batch, height, width)
    is compiled on first sight (about a second; OpenVINO's cache makes later starts quicker).
    Precision is set explicitly (see ``int8.choose_precision``) rather than left to OpenVINO, so
    ``fp32`` really is f32 on every CPU.

    ``streams`` > 1 (file mode, ``settings.cpu_streams``): a batch of several frames is computed
    that many frames at once, each on its own share of the threads (compiled once for one frame,
    whatever the batch). Beside libx264 on the same cores, two one-thread streams cost less than
    one two-thread request (``benchmarks/README.md``), presumably because a thread the encoder
    preempts then stalls only its own frame, not the other thread at every layer's barrier. A
    lone frame, and every frame in live mode, goes to one request on all the threads: it must be
    out soonest.
    """

    name = "openvino"
    MAX_SHAPES = 8  # file mode meets batches of 1..--batch frames; beyond that, forget the oldest

    def __init__(self, graph: Path, threads: int, precision: str = "auto", min_side: int = 1, streams: int = 1):
        ov = openvino()

        self.core = ov.Core()
        # Compiled blobs go beside the graphs; a read-only cache gets the temporary stand-in.
        self.core.set_property({"CACHE_DIR": str(writable_cache_dir() / "openvino")})
        # The shipped model may come with an int8 graph beside its float one; it is taken only
        # when it passed its quality check (livesharp.int8), and under auto only where it
        # proved faster on this CPU: timed against the float graph at the first frame size met
        # (``_measure``), once per CPU, model and size, as the CPU's flags misjudged it (issue 31).
        check_precision(precision)
        self.caps = None if precision == "fp32" else int8.cpu_capabilities()
        self.float_graph = Path(graph)
        self.quantized = None if precision == "fp32" else int8.int8_graph(graph)
        self.threads = threads
        self.measured: int8.Measured | None = None  # auto's timing of int8 against float, once taken
        self.pending = precision == "auto" and self.quantized is not None and "int8" in self.caps
        chosen = int8.float_precision(self.caps) if self.pending else \
            int8.choose_precision(precision, self.caps, has_int8_graph=self.quantized is not None)
        self.streams = max(1, min(streams, threads))
        self.requests: dict[tuple[int, ...], object] = {}  # batch shape -> request on all the threads
        self.queues: dict[tuple[int, ...], object] = {}  # frame shape -> one request per stream
        self.min_side = min_side
        self._use(chosen)

    def _use(self, precision: str) -> None:
        self.precision = precision
        self.graph = str(self.quantized if precision == "int8" else self.float_graph)
        self.config = self._config(precision)

    def _config(self, precision: str) -> dict:
        hint = int8.openvino_hint(precision, self.caps)
        return {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}

    def choice_key(self) -> str:
        """What ``auto``'s measured choice depends on: the CPU (its name and generation), the
        threads, the model and its int8 graph (remade for the same model, it may run at another
        speed), OpenVINO."""
        ov = openvino()

        quantized = "none" if self.quantized is None else int8.file_digest(self.quantized, Path(self.quantized).with_suffix(".bin"))
        return (f"{int8.cpu_model()} ({int8.cpu_generation()}) [{int8.cpu_kind(self.caps)}], {self.threads} threads"
                f" | {int8.graph_digest(self.float_graph)} | int8 {quantized}"
                f" | openvino {ov.__version__} | graph {GRAPH_VERSION}")

    def _measure(self, shape: tuple[int, ...]) -> None:
        """Choose between the int8 and the float graph by timing one frame of ``shape`` in each
        (``int8.measured_precision``), unless the cache beside the exported graphs knows."""
        one = (1, *shape[1:])
        frame, s = np.zeros(one, np.uint8), np.ones(1, np.float32)
        compiled = {}

        def prepare(precision: str):
            def compile_it():
                graph = self.quantized if precision == "int8" else self.float_graph
                request = self._compile(one, self._config(precision), {}, graph).create_infer_request()
                compiled[precision] = request
                return lambda: request.infer({"input": frame, "strength": s}, share_inputs=True)
            return compile_it

        float_precision, size = int8.float_precision(self.caps), f"{one[2]}x{one[1]}"
        # Per frame size too: which wins depends on it (2 AVX2 cores: equal at 1280x720, fp32 4 %
        # ahead at 640x360), and a thumbnail's answer must not decide for a camera's frames.
        self.measured = int8.measured_precision(f"{self.choice_key()} | {size}", {float_precision: prepare(float_precision),
                                                "int8": prepare("int8")}, writable_cache_dir() / int8.CHOICES_FILE, size=size)
        self.pending = False
        self._use(self.measured.precision)
        if self.measured.precision in compiled:  # compiled for the timing: keep it
            self.requests[one] = compiled[self.measured.precision]

    def _compile(self, shape: tuple[int, ...], config: dict, cache: dict, graph=None):
        if len(cache) >= self.MAX_SHAPES:
            cache.pop(next(iter(cache)))
        model = self.core.read_model(str(graph or self.graph))
        model.reshape({"input": list(shape), "strength": [1]})
        return self.core.compile_model(model, "CPU", config)

    def _request(self, shape: tuple[int, ...]):
        if self.pending:
            self._measure(shape)
        if shape not in self.requests:
            self.requests[shape] = self._compile(shape, self.config, self.requests).create_infer_request()
        return self.requests[shape]

    def _queue(self, shape: tuple[int, ...]):
        if self.pending:
            self._measure(shape)
        if shape not in self.queues:
            ov = openvino()

            config = self.config | {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams}
            queue = ov.AsyncInferQueue(self._compile(shape, config, self.queues), self.streams)
            queue.set_callback(_copy_out)
            self.queues[shape] = queue
        return self.queues[shape]

    def infer(self, frames: np.ndarray, strength: float) -> np.ndarray:
        # The frames are read where they are (OpenVINO copies inputs unless told to share them:
        # another full frame per call); the output is copied out, as the request reuses its buffer.
        frames, s = np.ascontiguousarray(frames), np.array([strength], np.float32)
        if self.streams == 1 or len(frames) == 1:
            return self._request(frames.shape).infer({"input": frames, "strength": s}, share_inputs=True)[0].copy()
        queue, out = self._queue((1, *frames.shape[1:])), np.empty_like(frames)
        try:
            for i in range(len(frames)):
                queue.start_async({"input": frames[i:i + 1], "strength": s}, (out, i), share_inputs=True)
        finally:
            # Also when Ctrl-C stops the loop: the inputs are shared and must outlive every
            # request, and a request left running calls back into Python, which aborts the
            # process if that happens as the interpreter shuts down.
            queue.wait_all()
        return out

    def close(self) -> None:
        for queue in self.queues.values():
            queue.wait_all()
        self.requests.clear()
        self.queues.clear()


def _copy_out(request, slot: tuple[np.ndarray, int]) -> None:
    """AsyncInferQueue's callback: frame ``i`` of the batch into ``out[i]``."""
    out, i = slot
    out[i] = request.get_output_tensor(0).data[0]


RUNNERS = {"onnx": OnnxRunner, "openvino": OpenVinoRunner}

__all__ = ["BACKENDS", "CPU_PREFERENCE", "PRECISIONS", "FORMATS", "check_precision", "int8_unavailable", "installed", "require_torch", "device_type",
           "choose_backend", "Runner", "GraphRunner", "OnnxRunner", "OpenVinoRunner"]

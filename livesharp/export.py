"""From a torch student to the graphs the CPU runtimes load: the export, and the cached one.

This is the one module of the graph side that needs torch (and the ``onnx`` package, which
torch's exporter writes with): running a graph does not (``runtimes.py``), so a base install,
which has no torch, runs the graph shipped in ``livesharp/weights/`` and never comes here.

Every exported graph describes itself in its ONNX ``metadata_props`` (``graph_metadata``, the
keys in ``livesharp.graph``): the digest of the weights it holds, the graph version, the side
multiple it pads to, its cost and its variant. That is all a runtime needs to run it without
the checkpoint, and what tells a stale shipped graph from a current one.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LivesharpError
from .files import atomic_output
from .model import VARIANTS, Student, count_macs
from .graph import GRAPH_VERSION, META, OPSET, cache_dir, export_lock, openvino, weights_digest, writable_cache_dir


def model_digest(net: Student) -> str:
    """A short hash of a student's architecture and weights (``graph.weights_digest``): the key
    of its exported graphs."""
    tensors = ((name, t.detach().cpu().contiguous().numpy().tobytes()) for name, t in net.state_dict().items())
    return weights_digest(net.cfg.args(), tensors)


def variant_of(net: Student) -> str:
    """The name in ``VARIANTS`` of ``net``'s architecture, or ``custom``."""
    return next((k for k, cfg in VARIANTS.items() if cfg == net.cfg), "custom")


def graph_metadata(net: Student, io: str, name: str = "") -> dict[str, str]:
    """The ``metadata_props`` of ``net``'s exported graph (keys in ``graph.META``).

    ``name`` is the model's name as users pass it (``tiny``); ``variant`` its architecture's
    name in ``VARIANTS`` (``custom`` for any other).
    """
    macs = count_macs(Student(net.cfg), 64, 64) / (64 * 64)
    values = {"digest": model_digest(net), "graph_version": GRAPH_VERSION, "multiple": net.cfg.multiple,
              "macs_per_pixel": f"{macs:.1f}", "io": io, "variant": variant_of(net), "name": name or variant_of(net)}
    return {META[k]: str(v) for k, v in values.items()}


class Uint8Frames(nn.Module):
    """The student with frame I/O: uint8 RGB (N, H, W, 3) in, uint8 RGB (N, H, W, 3) out.

    ``strength`` (a float32 of shape (1,)) blends input and output before rounding, exactly as
    the torch path does: 0 is the input, 1 the model, 2 doubles the detail it adds.

    The frame is folded (``fold_frames``) while still uint8, and the residual is added,
    clamped and rounded while still folded, so the only full-resolution work is moving bytes:
    no float frame at full size exists in the graph. An int8 runtime then feeds the first
    convolution straight from the frame's bytes; under OpenVINO int8 this graph ran 720p about
    1.4x faster than one that converted to float first (``Student.folded_residual``).
    """

    def __init__(self, net: Student):
        super().__init__()
        self.net = net

    def forward(self, frames, strength):
        h, w = frames.shape[1], frames.shape[2]
        folded = fold_frames(frames, self.net.cfg.multiple, self.net.cfg.unshuffle).float()  # 0..255
        residual = self.net.folded_residual(folded / 255, self.net.folded_frame(h, w, frames.device))
        # lerp(x, x + r, s) = x + s·r, in grey levels
        y = (folded + (strength * 255) * residual).clamp(0, 255).round().to(torch.uint8)
        return unfold_frames(y, self.net.cfg.unshuffle)[:, :h, :w]


# The frames stay (N, H, W, 3) up to the fold and from the unfold: each is one reshape-permute-
# reshape, which OpenVINO runs as a single transpose. Folding NCHW instead (permute, pad, then
# pixel_unshuffle; pixel_shuffle, then permute back) costs two full-frame byte transposes at
# each end: tiny v6's 720p int8 graph ran 4-7 % slower that way (three paired runs of 25 turns
# on 2 Zen 5 cores, medians 29.5/27.2/26.8 ms against 28.5/25.2/25.0), with the same output.
def fold_frames(frames: torch.Tensor, multiple: int, r: int) -> torch.Tensor:
    """(N, H, W, 3) -> (N, 3 r², H', W'), exactly ``Student.fold`` of the NCHW frames in a graph:
    reflect-padded bottom and right to ``multiple``, channel c·r² + i·r + j holding the pixel at
    (y·r + i, x·r + j) of colour c (PixelUnshuffle's order)."""
    n, h, w, _ = frames.shape
    # reflect pads a 5-D tensor's last three axes, so height and width are padded where they are
    x = F.pad(frames[:, None], (0, 0, 0, -w % multiple, 0, -h % multiple), mode="reflect")[:, 0]
    hr, wr = x.shape[1] // r, x.shape[2] // r
    return x.reshape(n, hr, r, wr, r, 3).permute(0, 5, 2, 4, 1, 3).reshape(n, 3 * r * r, hr, wr)


def unfold_frames(folded: torch.Tensor, r: int) -> torch.Tensor:
    """The inverse of ``fold_frames`` before its padding: (N, 3 r², H', W') -> (N, H' r, W' r, 3)."""
    n, _, hr, wr = folded.shape
    return folded.reshape(n, 3, r, r, hr, wr).permute(0, 4, 2, 5, 3, 1).reshape(n, hr * r, wr * r, 3)


def export_onnx(net: Student, path: str | Path, io: str = "float", name: str = "") -> Path:
    """Write ``net`` as an ONNX graph with dynamic batch, height and width (atomically).

    ``io="float"``: input and output (N, 3, H, W) float32 RGB in [0, 1], like the torch model.
    ``io="uint8"``: (N, H, W, 3) uint8 RGB frames in and out, conversions inside the graph, and
    a second input ``strength`` (float32, shape (1,): 1 is the model, see ``Uint8Frames``).
    Sides must be at least ``net.cfg.multiple`` pixels (the graph reflect-pads to that multiple).
    The graph carries ``graph_metadata(net, io, name)``, so ``--model PATH.onnx`` can run it.
    """
    import onnx

    if io not in ("float", "uint8"):
        raise LivesharpError(f"--io {io}: use float or uint8")
    path = Path(path)
    net = net.eval().cpu()
    graph_net = net.fused()  # the same function in fewer operations; the metadata names net's weights
    # Trace at a size that needs padding on both sides, so the padding ops are in the graph.
    m = net.cfg.multiple
    h, w = 2 * m + 3, 3 * m + 5
    if io == "float":
        module, axes, names = graph_net, {0: "batch", 2: "height", 3: "width"}, ["input"]
        example = (torch.rand(1, 3, h, w),)
    else:
        module, axes, names = Uint8Frames(graph_net), {0: "batch", 1: "height", 2: "width"}, ["input", "strength"]
        example = (torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8), torch.ones(1))
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the parity tests are the check
        torch.onnx.export(module, example, str(tmp), input_names=names, output_names=["output"],
                          dynamic_axes={"input": axes, "output": axes}, opset_version=OPSET, dynamo=False)
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, graph_metadata(net, io, name))
        onnx.save(graph, str(tmp))
    return path


def export_openvino(net: Student, path: str | Path, io: str = "float") -> Path:
    """Write ``net`` as OpenVINO IR: ``path`` (.xml) and the weights beside it (.bin)."""
    if importlib.util.find_spec("openvino") is None:
        raise LivesharpError('--format openvino: openvino is not installed; pip install "livesharp[openvino]"')
    ov = openvino()

    path = Path(path)
    if path.suffix != ".xml":
        raise LivesharpError(f"{path}: OpenVINO IR is written as NAME.xml (+ NAME.bin); give a path ending in .xml")
    with tempfile.TemporaryDirectory() as d:
        onnx_path = export_onnx(net, Path(d) / "model.onnx", io=io)
        # read_model: the model the converter makes of an ONNX graph, without the converter's
        # own telemetry calls (off in livesharp anyway: graph.openvino).
        model = ov.Core().read_model(str(onnx_path))
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
        with export_lock(folder):
            if not path.is_file():  # another process may have exported it while this one waited
                export_onnx(net, path, io="uint8")
    except OSError as e:
        raise LivesharpError(f"cannot write the exported model to {folder} ({e.strerror}); set LIVESHARP_CACHE to a writable folder") from None
    return path


__all__ = ["model_digest", "variant_of", "graph_metadata", "Uint8Frames", "fold_frames", "unfold_frames", "export_onnx", "export_openvino", "cached_graph"]

"""What the exporter and the runtimes share: an exported graph's metadata, and the cache folder.

Every exported graph describes itself in its ONNX ``metadata_props`` (written by
``livesharp.export.graph_metadata``, read by ``read_graph``): the digest of the weights it
holds, the graph version, the side multiple it pads to, its cost and its variant. That is all a
runtime needs to run it without the checkpoint or torch. The digest is ``weights_digest``,
which ``checkpoint_digest`` also computes from a checkpoint file without torch, so the shipped
graph is known to hold the shipped checkpoint before anything loads torch.

A checkpoint of one's own is exported once into the cache folder (``cache_dir``), keyed by a
hash of the weights and architecture. Two first runs at once export it once (``export_lock``:
the second waits for the first, then finds it), and a cache folder that cannot be written (a
read-only home) is replaced, with one warning, by a temporary one for the process.

Nothing here imports torch.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import json
import logging
import os
import pickle
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

import platformdirs
from filelock import FileLock

from .errors import LivesharpError

OPSET = 17
# Part of the cache key: bump it when the exported graph's interface or contents change, so
# graphs exported by an older livesharp are not loaded by a newer one.
# 4: frames folded and unfolded in one transpose each (livesharp.export.fold_frames);
# 5: narrow norms take their channel means by convolution (livesharp.model.ChannelNorm).
GRAPH_VERSION = 5
# The ONNX metadata_props an exported graph describes itself with (livesharp.export.graph_metadata).
META = {k: f"livesharp_{k}" for k in ("digest", "graph_version", "multiple", "macs_per_pixel", "io", "variant", "name")}

log = logging.getLogger("livesharp")



def openvino():
    """The ``openvino`` module, imported with its usage telemetry off.

    ``import openvino`` reports itself to Google Analytics, unless the user opted out, from a
    process forked off a worker thread: a video tool should not call out unasked, and a fork
    from a thread can deadlock in the child, which then hangs the program as it exits (seen in
    this project's test suite). With ``openvino_telemetry`` unimportable, OpenVINO (and NNCF)
    fall back to their own stubs; the user's own consent file is left as it is.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino

@dataclass(frozen=True)
class GraphInfo:
    """A uint8-frame graph and what its metadata says: enough to run it without torch."""

    path: Path
    digest: str  # livesharp.export.model_digest of the weights it was exported from
    multiple: int  # sides are reflect-padded to this multiple: smaller frames are edge-padded to it first
    macs_per_pixel: float
    variant: str  # the architecture's name in VARIANTS, or custom
    name: str


def _varint(buf, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf):
    """(field number, value) of one protobuf message's top level: ints for varints, else bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield key >> 3, value


def onnx_metadata(path: str | Path, data: memoryview | None = None) -> dict[str, str]:
    """An ONNX file's ``metadata_props``, read from the protobuf itself (ModelProto field 14);
    ``data``: the file's bytes where the caller has read them already.

    The base install has a runtime but not the ``onnx`` package; a dozen lines of wire format
    read the few strings the graph describes itself with, skipping the weights unparsed.
    """
    data = memoryview(Path(path).read_bytes()) if data is None else data
    props = {}
    try:
        for field, value in _fields(data):
            if field == 14:  # StringStringEntryProto: key = 1, value = 2
                entry = {k: bytes(v).decode() for k, v in _fields(value) if k in (1, 2)}
                props[entry.get(1, "")] = entry.get(2, "")
    except (IndexError, ValueError, UnicodeDecodeError, TypeError):
        raise LivesharpError(f"{path}: not an ONNX file") from None
    return props


# The interface every runner feeds a graph and reads back: (name, ONNX element type, axes).
# Frames are (N, H, W, 3) uint8 RGB; strength is a float32 of shape (1,).
INTERFACE = {"input": (2, 4), "strength": (1, 1)}
OUTPUT = (2, 4)
_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}


def _value_info(buf) -> tuple[str, int, int]:
    """An ONNX ValueInfoProto as (name, element type, axes); type 0 for a non-tensor."""
    name, elem, axes = "", 0, 0
    for field, value in _fields(buf):
        if field == 1:
            name = bytes(value).decode()
        elif field == 2:  # TypeProto: tensor_type = 1 -> elem_type = 1, shape = 2 -> dim = 1
            for kind, tensor in _fields(value):
                if kind == 1:
                    for k, v in _fields(tensor):
                        if k == 1:
                            elem = v
                        elif k == 2:
                            axes = sum(1 for d, _ in _fields(v) if d == 1)
    return name, elem, axes


def onnx_interface(path: str | Path, data: memoryview | None = None) -> tuple[dict[str, tuple[int, int]], list[tuple[int, int]]]:
    """An ONNX file's inputs (the ones not filled by its own weights) as {name: (element type,
    axes)}, and its outputs as [(element type, axes)], read from the protobuf like ``onnx_metadata``."""
    data = memoryview(Path(path).read_bytes()) if data is None else data
    inputs, outputs, weights = {}, [], set()
    try:
        for field, graph in _fields(data):
            if field != 7:  # ModelProto.graph
                continue
            for part, value in _fields(graph):
                if part == 11:  # GraphProto.input
                    name, elem, axes = _value_info(value)
                    inputs[name] = (elem, axes)
                elif part == 12:  # GraphProto.output
                    outputs.append(_value_info(value)[1:])
                elif part == 5:  # GraphProto.initializer: TensorProto, name = 8
                    weights.update(bytes(v).decode() for k, v in _fields(value) if k == 8)
    except (IndexError, ValueError, UnicodeDecodeError, TypeError):
        raise LivesharpError(f"{path}: not an ONNX file") from None
    return {k: v for k, v in inputs.items() if k not in weights}, outputs


def _describe(elem: int, axes: int) -> str:
    return f"{axes}-axis {_TYPES.get(elem, f'type {elem}')}"


def read_graph(path: str | Path) -> GraphInfo:
    """A livesharp uint8-frame graph (``livesharp export MODEL X.onnx --io uint8``) and its metadata.

    Whatever its metadata says, a graph is refused in one line unless it has the interface
    the runners use (``INTERFACE``) and a whole, positive side multiple.
    """
    path = Path(path)
    data = memoryview(path.read_bytes())  # read once for the metadata and the interface
    meta = onnx_metadata(path, data)
    fix = f"export one with: livesharp export MODEL {path.name} --io uint8"
    if META["digest"] not in meta:
        raise LivesharpError(f"{path}: not a graph livesharp exported (no {META['digest']} in its metadata); {fix}")
    if meta.get(META["io"]) != "uint8":
        raise LivesharpError(f"{path}: a {meta.get(META['io'], 'float')} graph; livesharp runs uint8-frame graphs: {fix}")
    if meta.get(META["graph_version"]) != str(GRAPH_VERSION):
        raise LivesharpError(f"{path}: graph version {meta.get(META['graph_version'])}, this livesharp runs {GRAPH_VERSION}; {fix}")
    multiple = meta.get(META["multiple"], "")
    if not multiple.isdigit() or int(multiple) < 1:
        raise LivesharpError(f"{path}: its metadata gives the side multiple as {multiple!r}, not a whole number of pixels; {fix}")
    inputs, outputs = onnx_interface(path, data)
    if inputs != INTERFACE or outputs != [OUTPUT]:
        takes = ", ".join(f"{k} ({_describe(*v)})" for k, v in inputs.items()) or "nothing"
        gives = ", ".join(_describe(*o) for o in outputs) or "nothing"
        want = ", ".join(f"{k} ({_describe(*v)})" for k, v in INTERFACE.items())
        raise LivesharpError(f"{path}: carries livesharp metadata but takes {takes} and gives {gives}, where livesharp's graphs take "
                             f"{want} and give one {_describe(*OUTPUT)}; {fix}")
    return GraphInfo(path, meta[META["digest"]], int(multiple), float(meta.get(META["macs_per_pixel"], 0)),
                     meta.get(META["variant"], "custom"), meta.get(META["name"], path.stem))


# StudentConfig fields newer than shipped graphs, with the value that leaves a model unchanged.
ADDED_LATER = {"detail": 0}


def weights_digest(model_args: dict, tensors: Iterable[tuple[str, bytes]]) -> str:
    """A short hash of an architecture (a checkpoint's ``model_args``) and its weights (each
    tensor's name and contiguous bytes, in state_dict order): what a graph's metadata records as
    the weights it holds (``livesharp.export.model_digest``), and the key of exported graphs."""
    # A field added to the architecture later is left out at the value that computes what
    # models before it did, so their digests, and the graphs that record them, stay valid.
    model_args = {k: v for k, v in model_args.items() if not (k in ADDED_LATER and v == ADDED_LATER[k])}
    h = hashlib.sha256(json.dumps(model_args, sort_keys=True).encode())
    for name, data in tensors:
        h.update(name.encode())
        h.update(data)
    return h.hexdigest()[:16]


# The storages torch.save names, as numpy types with the same bytes (bfloat16 has none: its bytes as uint16).
_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2", "LongStorage": "<i8",
             "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}


def _rebuild_tensor(storage, offset, size, stride, *_):
    return np.lib.stride_tricks.as_strided(storage[offset:], tuple(size), tuple(s * storage.itemsize for s in stride))


class _TensorsOnly(pickle.Unpickler):
    """Unpickles a torch.save checkpoint's ``data.pkl`` with numpy arrays for its tensors, and
    refuses every other class, as ``torch.load(weights_only=True)`` would and stricter."""

    def __init__(self, archive: zipfile.ZipFile, folder: str):
        super().__init__(archive.open(f"{folder}/data.pkl"))
        self.archive, self.folder = archive, folder

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        _, dtype, key, _, _ = pid  # ("storage", type, key, location, numel)
        return np.frombuffer(self.archive.read(f"{self.folder}/data/{key}"), dtype)


def checkpoint_digest(path: str | Path) -> str | None:
    """``weights_digest`` of a livesharp checkpoint, read without torch; None where the file is
    not one this reader follows (then torch must load it to tell).

    Its ``model_args`` are hashed as recorded; fields added to the architecture since are left
    out at their old value (``ADDED_LATER``), so a checkpoint saved before them and one saved
    after give the same digest.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            folder = archive.namelist()[0].split("/")[0]
            if archive.read(f"{folder}/byteorder").strip() != b"little":
                return None
            ckpt = _TensorsOnly(archive, folder).load()
        tensors = ((k, np.ascontiguousarray(v).tobytes()) for k, v in ckpt["model"].items())
        return weights_digest(ckpt["model_args"], tensors)
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, KeyError, IndexError, ValueError, TypeError, AttributeError, EOFError):
        return None


def _configured_cache() -> Path:
    if os.environ.get("LIVESHARP_CACHE"):
        return Path(os.environ["LIVESHARP_CACHE"])
    # Linux: $XDG_CACHE_HOME/livesharp, else ~/.cache/livesharp; macOS ~/Library/Caches/livesharp;
    # Windows %LOCALAPPDATA%\livesharp\Cache
    return platformdirs.user_cache_path("livesharp", appauthor=False)


# A configured cache folder that this process found it cannot write -> the temporary folder
# standing in for it until the process exits. Keyed by the folder, so a program that points
# LIVESHARP_CACHE elsewhere afterwards is obeyed.
_STAND_INS: dict[Path, Path] = {}


def cache_dir() -> Path:
    """``$LIVESHARP_CACHE``, else the user's cache folder for livesharp (``platformdirs``: on
    Linux ``$XDG_CACHE_HOME/livesharp``, else ``~/.cache/livesharp``); read on every call. Where
    that folder proved unwritable, the temporary one standing in for it in this process (see
    ``writable_cache_dir``)."""
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


def export_lock(folder: Path) -> FileLock:
    """One process at a time exports into ``folder``, on every OS: two first runs started at once
    export a model once, the second waiting and then finding the graph. The OS lock on
    ``export.lock`` is released when its holder exits, so a killed one never leaves it locked."""
    return FileLock(folder / "export.lock")


__all__ = ["OPSET", "GRAPH_VERSION", "META", "INTERFACE", "GraphInfo", "onnx_metadata", "onnx_interface", "read_graph", "weights_digest", "checkpoint_digest", "cache_dir", "writable_cache_dir", "export_lock"]

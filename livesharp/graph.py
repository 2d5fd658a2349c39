"""What the exporter and the runtimes share: an exported graph's metadata, and the cache folder.

Every exported graph describes itself in its ONNX ``metadata_props`` (written by
``livesharp.export.graph_metadata``, read by ``read_graph``): the digest of the weights it
holds, the graph version, the side multiple it pads to, its cost and its variant. That is all a
runtime needs to run it without the checkpoint or torch.

A checkpoint of one's own is exported once into the cache folder (``cache_dir``), keyed by a
hash of the weights and architecture. Two first runs at once export it once (``export_lock``:
the second waits for the first, then finds it), and a cache folder that cannot be written (a
read-only home) is replaced, with one warning, by a temporary one for the process.

Nothing here imports torch.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props``, read from the protobuf itself (ModelProto field 14).

    The base install has a runtime but not the ``onnx`` package; a dozen lines of wire format
    read the few strings the graph describes itself with, skipping the weights unparsed.
    """
    data = memoryview(Path(path).read_bytes())
    props = {}
    try:
        for field, value in _fields(data):
            if field == 14:  # StringStringEntryProto: key = 1, value = 2
                entry = {k: bytes(v).decode() for k, v in _fields(value) if k in (1, 2)}
                props[entry.get(1, "")] = entry.get(2, "")
    except (IndexError, ValueError, UnicodeDecodeError, TypeError):
        raise LivesharpError(f"{path}: not an ONNX file") from None
    return props


def read_graph(path: str | Path) -> GraphInfo:
    """A livesharp uint8-frame graph (``livesharp export MODEL X.onnx --io uint8``) and its metadata."""
    path = Path(path)
    meta = onnx_metadata(path)
    fix = f"export one with: livesharp export MODEL {path.name} --io uint8"
    if META["digest"] not in meta:
        raise LivesharpError(f"{path}: not a graph livesharp exported (no {META['digest']} in its metadata); {fix}")
    if meta.get(META["io"]) != "uint8":
        raise LivesharpError(f"{path}: a {meta.get(META['io'], 'float')} graph; livesharp runs uint8-frame graphs: {fix}")
    if meta.get(META["graph_version"]) != str(GRAPH_VERSION):
        raise LivesharpError(f"{path}: graph version {meta.get(META['graph_version'])}, this livesharp runs {GRAPH_VERSION}; {fix}")
    return GraphInfo(path, meta[META["digest"]], int(meta[META["multiple"]]), float(meta.get(META["macs_per_pixel"], 0)),
                     meta.get(META["variant"], "custom"), meta.get(META["name"], path.stem))


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


__all__ = ["OPSET", "GRAPH_VERSION", "META", "GraphInfo", "onnx_metadata", "read_graph", "cache_dir", "writable_cache_dir", "export_lock"]

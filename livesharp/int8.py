"""int8 inference under OpenVINO: whether to use it on this CPU, and the int8 graph a model ships.

A model's int8 graph is made once, when the model ships (``python -m train.quantize``): NNCF
post-training quantization of its uint8-frame graph, then a quality check on real validation
pairs. It is written only if it costs at most 0.05 dB there, beside the float graph it was made
from (``NAME.onnx`` -> ``NAME.int8.xml`` + ``NAME.int8.bin``), and its OpenVINO ``rt_info``
says which graph that was and what it cost. A stale one (the model retrained, the int8 graph not
remade) is recognised by its digest and never used.

Whether int8 pays is measured, not read from the CPU's flags: with int8 dot-product
instructions (VNNI, AMX-INT8) it is clearly faster, and without them it was expected to be
emulated and slower, yet on AVX2-only CPUs it has come out faster on one and equal on another
(per CPU kind: benchmarks/README.md). So ``auto`` times the two graphs on this CPU, once per CPU,
model and frame size, and keeps the faster (``measured_precision``); the answer is cached beside
the exported graphs (``CHOICES_FILE``).

Nothing heavy is imported here: openvino only inside the functions that read graphs or ask the
CPU, so that choosing ``fp32`` needs neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import LivesharpError
from .graph import openvino

# --precision. auto: the fastest arithmetic the device does well and the model was checked in
# (fp16 on CUDA; under OpenVINO the model's checked int8 graph where it times faster than the
# float one on this CPU, else bf16 where native); fp32: full precision everywhere; int8:
# OpenVINO's int8 or an error.
PRECISIONS = ("auto", "fp32", "int8")
# /proc/cpuinfo flags of int8 dot-product instructions: AVX-512 VNNI (Cascade Lake, Zen 4 on),
# AVX-VNNI (Alder Lake on, 256-bit), AMX-INT8 (Sapphire Rapids on).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# rt_info keys of an int8 graph (and, for the digest, a metadata_prop of the ONNX graph).
DIGEST_KEY = "livesharp_digest"  # the float graph's digest, see graph_digest()
PASSED_KEY = "livesharp_int8_passed"  # "true" once the quality check passed
COST_KEY = "livesharp_int8_cost_db"  # set 1 gain lost to int8, in dB
# Where ``auto``'s measured choices are kept, in the cache folder beside the exported graphs.
CHOICES_FILE = "precision-choices.json"
CPUINFO = Path("/proc/cpuinfo")  # Linux's description of the CPU: its flags, name and generation

log = logging.getLogger("livesharp")


def cpu_capabilities() -> set[str]:
    """What this CPU offers: OpenVINO's ``OPTIMIZATION_CAPABILITIES`` (``INT8``, ``BF16``, ...)
    and, on Linux, the CPU's flags from /proc/cpuinfo (``avx512_vnni``, ...). Lower case."""
    try:
        ov = openvino()

        found = {c.lower() for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    except ImportError:  # the flags alone still name the CPU's kind (cpu_kind)
        found = set()
    # the flags (x86) or Features (Arm) of /proc/cpuinfo; none off Linux, where OpenVINO's list
    # alone says nothing about VNNI
    info = _cpuinfo()
    found |= set(info.get("flags", info.get("Features", "")).split())
    return found


def _normalised(capabilities: Iterable[str] | None) -> set[str]:
    return cpu_capabilities() if capabilities is None else {c.lower() for c in capabilities}


def int8_capable(capabilities: Iterable[str] | None = None) -> bool:
    """Whether int8 inference pays on this CPU: OpenVINO runs int8 here (``INT8``) and the CPU
    has int8 dot-product instructions (a flag in ``INT8_FLAGS``).

    capabilities: a stand-in for ``cpu_capabilities()`` (any case); None asks this machine.
    Where the flags cannot be read (not Linux) the answer is False: without VNNI int8 is
    emulated and no faster, and an ``auto`` that guesses wrong costs quality for nothing.

    >>> int8_capable(["INT8", "BF16", "FP32", "avx2", "avx512_vnni"])
    True
    >>> int8_capable(["INT8", "FP32", "avx2"])  # every x86 CPU says INT8
    False
    """
    caps = _normalised(capabilities)
    return "int8" in caps and any(flag in caps for flag in INT8_FLAGS)


def bf16_native(capabilities: Iterable[str] | None = None) -> bool:
    """Whether OpenVINO computes bf16 natively here (``BF16``: AVX512-BF16 or AMX); elsewhere
    it would be emulated, slower than fp32."""
    return "bf16" in _normalised(capabilities)


def choose_precision(requested: str, capabilities: Iterable[str] | None = None, has_int8_graph: bool = False) -> str:
    """What ``--precision`` means for this model on this CPU: ``"int8"``, ``"bf16"`` or ``"fp32"``.

    requested: ``auto``, ``fp32`` or ``int8`` (``PRECISIONS``).
    capabilities: a stand-in for ``cpu_capabilities()``; None asks this machine (only when
        the answer depends on it).
    has_int8_graph: whether the model ships an int8 graph that passed its quality check
        (``int8_graph(graph) is not None``).

    ``auto`` is int8 only where both hold (``int8_capable`` and ``has_int8_graph``); else bf16
    where the CPU computes it natively, else fp32. That is the guess from the CPU's flags alone:
    under OpenVINO, where an int8 graph exists, ``auto`` times it against the float graph
    instead (``measured_precision``). ``int8`` is int8 wherever OpenVINO runs int8 (every x86
    CPU: without VNNI it was still measured faster, see the module's docstring), or a
    ``LivesharpError`` saying why not; ``fp32`` is fp32 everywhere.

    >>> zen5 = ["INT8", "BF16", "FP32", "avx512_vnni", "avx512_bf16"]
    >>> choose_precision("auto", zen5, has_int8_graph=True)
    'int8'
    >>> choose_precision("auto", zen5, has_int8_graph=False)
    'bf16'
    >>> choose_precision("auto", ["INT8", "FP32", "avx2"], has_int8_graph=True)
    'fp32'
    """
    if requested not in PRECISIONS:
        raise LivesharpError(f"--precision {requested}: use {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32"
    caps = _normalised(capabilities)
    if requested == "int8":
        if "int8" not in caps:
            raise LivesharpError("--precision int8: OpenVINO runs no int8 on this CPU; use --precision auto")
        if not has_int8_graph:
            raise LivesharpError("--precision int8: this model ships no int8 weights that passed the quality check; use --precision auto")
        return "int8"
    if has_int8_graph and int8_capable(caps):
        return "int8"
    return float_precision(caps)


def float_precision(capabilities: Iterable[str] | None = None) -> str:
    """The float graph's arithmetic under ``auto``: bf16 where native, else fp32.

    >>> float_precision(["BF16", "INT8"]), float_precision(["INT8", "avx2"])
    ('bf16', 'fp32')
    """
    return "bf16" if bf16_native(capabilities) else "fp32"


def cpu_kind(capabilities: Iterable[str] | None = None) -> str:
    """The CPU's class of vector instructions, as the speed tables are split: ``AMX``,
    ``AVX-512 VNNI``, ``AVX-512``, ``AVX-VNNI`` (AVX2 with 256-bit VNNI), ``AVX2`` or ``other``.

    >>> cpu_kind(["avx2", "avx512f", "avx512_vnni"]), cpu_kind(["avx2", "fma"]), cpu_kind(["amx_int8", "avx512f"])
    ('AVX-512 VNNI', 'AVX2', 'AMX')
    """
    caps = _normalised(capabilities)
    if "amx_int8" in caps or "amx_bf16" in caps:
        return "AMX"
    if "avx512f" in caps:
        return "AVX-512 VNNI" if "avx512_vnni" in caps else "AVX-512"
    if "avx2" in caps:
        return "AVX-VNNI" if "avx_vnni" in caps else "AVX2"
    return "other"


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (``flags``, ``model name``, ``cpu family``,
    ...); empty where there is none."""
    fields = {}
    try:
        for line in CPUINFO.read_text().splitlines():
            if not line.strip() and fields:  # every processor repeats them: the first is enough
                break
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    import platform

    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_generation() -> str:
    """What tells apart CPUs of one name: x86's family, model and stepping, or Arm's implementer,
    part and revision, from /proc/cpuinfo; empty where it cannot be read. Virtual machines name
    Zen 1 and Zen 3 EPYCs alike ("AMD EPYC"), and int8 tied with fp32 on one and won on the other.
    """
    info = _cpuinfo()
    keys = ("cpu family", "model", "stepping", "CPU implementer", "CPU part", "CPU revision")
    return " ".join(f"{k} {info[k]}" for k in keys if k in info)


@dataclass(frozen=True)
class Measured:
    """What ``measured_precision`` chose: the precision, each candidate's median milliseconds
    per frame, the frame size they were timed at, and whether this came from the cache."""

    precision: str
    ms: dict[str, float] = field(default_factory=dict)
    size: str = ""
    cached: bool = False

    def describe(self) -> str:
        """One line: ``int8 (measured: int8 61.2 ms, fp32 70.3 ms at 1280x720)``.

        >>> Measured("int8", {"int8": 61.2, "fp32": 70.34}, "1280x720", cached=True).describe()
        'int8 (measured: int8 61.2 ms, fp32 70.3 ms at 1280x720; cached)'
        """
        times = ", ".join(f"{p} {ms:.1f} ms" for p, ms in self.ms.items())
        return f"{self.precision} (measured: {times} at {self.size}{'; cached' if self.cached else ''})"


def _read_choices(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # none yet, or damaged: measure again and rewrite it
        return {}


def _write_choices(path: Path, choices: dict) -> None:
    # Whole or not at all: a reader never sees half a file (a damaged one only costs a re-measure).
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".choices-")
        with os.fdopen(fd, "w") as f:
            json.dump(choices, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        log.warning(f"cannot keep the measured precision in {path} ({e.strerror}); it will be measured again next time")


def measured_precision(key: str, candidates: dict[str, Callable[[], Callable[[], object]]], cache_file: Path, size: str = "",
                       rounds: int = 5, clock: Callable[[], float] = time.perf_counter) -> Measured:
    """The fastest of ``candidates`` on this machine, timed once per ``key`` and then cached.

    key: what the answer depends on (CPU, model, runtime version, threads); a new key measures.
    candidates: precision -> a function that prepares it (compiles the graph for the frame
        size) and returns a function that computes one frame. Only called when measuring.
    cache_file: the JSON file of earlier answers (``CHOICES_FILE`` in the cache folder).
    size: the frame size it is timed at, for the record.
    rounds: each candidate computes one frame per round, in turns, so that a change in the
        machine's load hits them alike; the median of the rounds counts. One untimed frame
        each first (allocation, caches).
    clock: seconds, as ``time.perf_counter`` (tests pass their own).

    A tie goes to the candidate listed first: list the float graph first, as it costs no quality.
    """
    cache_file = Path(cache_file)
    known = _read_choices(cache_file).get(key)
    if isinstance(known, dict) and known.get("precision") in candidates:
        return Measured(known["precision"], {p: float(v) for p, v in known.get("ms", {}).items()}, known.get("size", ""), cached=True)
    runs = {p: prepare() for p, prepare in candidates.items()}
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {p: [] for p in runs}
    for _ in range(rounds):
        for p, run in runs.items():
            t0 = clock()
            run()
            times[p].append(1000 * (clock() - t0))
    ms = {p: round(statistics.median(t), 2) for p, t in times.items()}  # a hundredth of a ms: no clock is finer
    best = min(ms, key=ms.get)  # min keeps the first of equals
    choices = _read_choices(cache_file)
    choices[key] = {"precision": best, "ms": ms, "size": size}
    _write_choices(cache_file, choices)
    return Measured(best, ms, size)


def openvino_hint(precision: str, capabilities: Iterable[str] | None = None) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for a chosen precision: ``"f32"`` or ``"bf16"``.

    An int8 graph keeps some operations in float (those NNCF does not quantize, and any its
    quality check kept in float); they run in bf16 where that is native, as the check measured.

    >>> openvino_hint("int8", ["BF16"]), openvino_hint("int8", []), openvino_hint("fp32", ["BF16"])
    ('bf16', 'f32', 'f32')
    """
    if precision == "int8":
        return "bf16" if bf16_native(capabilities) else "f32"
    return {"fp32": "f32", "bf16": "bf16"}[precision]


def int8_path(graph: str | Path) -> Path:
    """Where the int8 graph of ``graph`` lies: beside it, ``NAME.onnx`` -> ``NAME.int8.xml``.

    >>> int8_path("weights/livesharp-tiny.onnx").as_posix()
    'weights/livesharp-tiny.int8.xml'
    """
    return Path(graph).with_suffix(".int8.xml")


def graph_digest(graph: str | Path) -> str:
    """The identity of a float ONNX graph: its ``livesharp_digest`` metadata_prop (the model's
    digest, written by the export that ships it), else ``sha256:`` and the file's hash."""
    ov = openvino()

    graph = Path(graph)
    model = ov.Core().read_model(str(graph))
    if model.has_rt_info(["framework", DIGEST_KEY]):  # OpenVINO keeps ONNX metadata_props here
        return model.get_rt_info(["framework", DIGEST_KEY]).astype(str)
    return file_digest(graph)


def file_digest(*paths: str | Path) -> str:
    """``sha256:`` and the hash of the files' bytes, in order (an IR: its .xml and .bin)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()[:16]


def read_metadata(xml: str | Path) -> dict[str, str]:
    """The ``livesharp_*`` entries of an OpenVINO IR's rt_info, as strings."""
    ov = openvino()

    model = ov.Core().read_model(str(xml))
    return {k: v.astype(str) for k, v in model.get_rt_info().items() if k.startswith("livesharp_")}


def int8_graph(graph: str | Path) -> Path | None:
    """The int8 graph shipped beside the float ``graph`` (``int8_path``), or None.

    Returned only when its metadata says it was made from this graph (its ``livesharp_digest``
    equals ``graph_digest(graph)``) and passed the quality check (``livesharp_int8_passed``).
    One that does not is left alone with a warning: it belongs to another model.
    Reads nothing but a directory entry when there is no int8 graph.
    """
    xml = int8_path(graph)
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        return None
    meta = read_metadata(xml)
    if meta.get(DIGEST_KEY) != graph_digest(graph):
        log.warning(f"ignoring {xml}: made from another model than {Path(graph).name}; remake it with python -m train.quantize")
        return None
    if meta.get(PASSED_KEY) != "true":
        log.warning(f"ignoring {xml}: it did not pass the int8 quality check")
        return None
    return xml


__all__ = ["PRECISIONS", "INT8_FLAGS", "DIGEST_KEY", "PASSED_KEY", "COST_KEY", "CHOICES_FILE", "cpu_capabilities", "int8_capable",
           "bf16_native", "choose_precision", "float_precision", "cpu_kind", "cpu_model", "cpu_generation", "Measured", "measured_precision", "openvino_hint", "int8_path", "graph_digest", "file_digest", "read_metadata", "int8_graph"]

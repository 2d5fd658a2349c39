"""Ship a checkpoint as a model: the one command that writes what ``livesharp/weights/`` holds.

    python -m train.ship runs/conv32/student.pt --name tiny

writes, for ``--name tiny``:

- ``livesharp-tiny.pt``: the checkpoint itself, the source of truth (copied as it is);
- ``livesharp-tiny.onnx``: its uint8-frame graph, exactly as the runtimes' export cache holds it
  (``livesharp.export.export_onnx(net, path, io="uint8")``), whose metadata carries the
  checkpoint's digest, the graph version, the side multiple and the cost: what a base install,
  which has no torch, runs;
- ``livesharp-tiny.int8.xml`` + ``.bin`` where ``train.quantize`` is here and NNCF installed,
  and the int8 graph passes its quality check (``quantize_int8``); else none, and any older
  one is removed, since it was made from other weights.

Before anything is replaced, the graph is checked against the checkpoint on a real frame (the
demo clip's first): OpenVINO in fp32 (and ONNX Runtime where installed) within one grey level
of torch, the tolerance of the runtime parity tests. ``tests/livesharp/test_weights.py`` checks
the same in CI, so weights shipped without their graph fail there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from livesharp import settings
from livesharp.errors import LivesharpError

# One grey level: a rounding boundary may fall either way in another runtime's float arithmetic
# (test_runtimes.test_runtime_frames_match_torch_frames).
PARITY_GREY_LEVELS = 1


def demo_frame() -> np.ndarray:
    """The first frame of the packaged demo clip: real footage, as a user's video looks."""
    from livesharp.bench import DEMO_CLIP
    from livesharp.io import VideoReader

    reader = VideoReader(DEMO_CLIP)
    try:
        return next(iter(reader.frames())).rgb
    finally:
        reader.close()


def parity(checkpoint: Path, graph: Path, frame: np.ndarray | None = None) -> dict[str, int]:
    """Largest difference in grey levels between torch fp32 on ``checkpoint`` and each CPU runtime
    installed on ``graph``, on ``frame`` (default: ``demo_frame()``)."""
    from livesharp.engine import Sharpener
    from livesharp.graph import read_graph
    from livesharp.runtimes import installed

    frame = demo_frame() if frame is None else frame
    with Sharpener(str(checkpoint), device="cpu", backend="torch", precision="fp32") as ref:
        want = ref.sharpen(frame).astype(int)
    info = read_graph(graph)
    found = {}
    for backend in ("openvino", "onnx"):
        if installed(backend, export=False):
            with Sharpener(str(graph), device="cpu", backend=backend, precision="fp32") as s:
                assert s.graph == info
                found[backend] = int(np.abs(s.sharpen(frame).astype(int) - want).max())
    return found


def quantize_int8(onnx_path: Path, out_xml: Path) -> dict | None:
    """The hook for the optional int8 OpenVINO IR: ``train.quantize.quantize_shipped`` where that
    module and NNCF are installed. Its report, or None (no quantizer here, or the int8 graph failed
    the quality bar and was not written)."""
    if importlib.util.find_spec("nncf") is None or importlib.util.find_spec("train.quantize") is None:
        return None
    from train.quantize import quantize_shipped

    return quantize_shipped(onnx_path, out_xml)


def ship(checkpoint: str | Path, name: str = settings.DEFAULT_MODEL, out_dir: str | Path | None = None, int8: bool = True) -> dict:
    """Write ``livesharp-NAME.pt``, ``.onnx`` (and the int8 IR) into ``out_dir`` (default: the
    package's ``weights/``); return what was written and measured."""
    from livesharp.export import export_onnx, model_digest
    from livesharp.model import load_student

    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir is not None else settings.SHIPPED_MODELS
    pt, onnx_path = out_dir / f"livesharp-{name}.pt", out_dir / f"livesharp-{name}.onnx"
    net = load_student(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_onnx(net, Path(tmp) / onnx_path.name, io="uint8", name=name)
        diffs = parity(checkpoint, graph)
        if not diffs or max(diffs.values()) > PARITY_GREY_LEVELS:
            raise LivesharpError(f"{checkpoint}: the exported graph differs from torch by {diffs} grey levels "
                                 f"(at most {PARITY_GREY_LEVELS} allowed, and one CPU runtime needed); nothing shipped")
        out_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint.resolve() != pt.resolve():
            shutil.copyfile(checkpoint, pt)
        shutil.copyfile(graph, onnx_path)
    report = {"checkpoint": str(pt), "graph": str(onnx_path), "digest": model_digest(net), "parity_grey_levels": diffs}
    xml = onnx_path.with_suffix(".int8.xml")
    for stale in (xml, xml.with_suffix(".bin")):  # made from the weights this replaces
        stale.unlink(missing_ok=True)
    report["int8"] = quantize_int8(onnx_path, xml) if int8 else None
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.ship", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a student checkpoint, e.g. runs/conv32/student.pt")
    p.add_argument("--name", default=settings.DEFAULT_MODEL, help="the model name users pass as --model (default: %(default)s)")
    p.add_argument("--out", default=None, help="folder to write into (default: livesharp/weights/ of this checkout)")
    p.add_argument("--no-int8", action="store_true", help="skip the optional int8 OpenVINO IR")
    a = p.parse_args(argv)
    try:
        report = ship(a.checkpoint, a.name, a.out, int8=not a.no_int8)
    except LivesharpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

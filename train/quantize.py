"""int8 weights for a shipped model, shipped only if they cost at most 0.05 dB:
``python -m train.quantize GRAPH.onnx [--out GRAPH.int8.xml]``.

1. NNCF post-training quantization of the model's uint8-frame graph (OpenVINO), calibrated on
   crops that ``train.motion.TrajectoryBlur`` renders from stills (Kodak, Urban100, McMaster by
   default; a fixed seed, so the same command makes the same graph). Never the validation
   folders: the check below would then measure what the calibration saw. The convolutions run
   in int8; the elementwise operations and norms between them stay in float (``FLOAT_OPS``).
2. The quality check, int8 against the float graph, on the sets ``train.evaluate`` reports:
   set 1, real blur from unseen scenes (``--val-real``): the cost is the fp32 graph's mean gain
   over the blurry input less the int8 graph's, in dB; set 3, sharp frames as input
   (``--val-sharp``): PSNR(output, input) and the brightness shift.
3. Passed iff cost <= ``--max-cost`` (0.05 dB, issue 16) and set 3 stays at >= 35 dB and
   |shift| <= 0.3 grey levels (the ship bar of ``train.evaluate``). If the plain quantization
   fails, it is tried again with the first and last convolutions kept in float, and both are
   reported (``--keep-ends`` goes there directly).
4. A passing graph is written (atomically) as OpenVINO IR whose rt_info names the float graph it
   was made from and records its numbers and this command (see ``livesharp.int8``); a failing one
   writes nothing and exits 1.

The int8 graph is measured as livesharp runs it: operations left in float compute in bf16
where the CPU does that natively (``livesharp.int8.openvino_hint``). ``--bench`` adds 720p
times of fp32, bf16 and int8 on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from livesharp import int8
from livesharp.errors import LivesharpError
from livesharp.files import atomic_output
from livesharp.graph import openvino
from train.data import DataError, list_images
from train.evaluate import HARM_MAX_SHIFT, HARM_MIN_PSNR, PairFolder, SharpFrames, evaluate, from_uint8, to_uint8

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CALIB = (DATA / "kodak24_crop500", DATA / "urban100_hr_q95", DATA / "mcmaster18")
VAL_REAL = DATA / "gopro_real_pairs_val"
VAL_SHARP = (DATA / "gopro_test_sharp_frames",)
MAX_COST_DB = 0.05
# Operations whose inputs stay in float. Quantizing them as well (NNCF's default for the CPU)
# cost tiny v7 0.043 dB on set 1 and moved sharp frames' brightness by -0.23 grey levels; with
# them in float, 0.018 dB and -0.02, and the 720p graph no slower (26.7 against 27.3 ms in
# turns). Leaving only the products in float did not help (0.039 dB): the error came from
# quantizing the sums and the norms.
FLOAT_OPS = ("Add", "Subtract", "Multiply", "Divide", "Power", "Sqrt", "ReduceMean")
# The convolutions that take a norm's channel means (``livesharp.model.ChannelNorm``) are part of
# the norm: they stay in float too.
FLOAT_NAMES = (r".*/(centre|spread)/.*",)
# Weights in 7 bits on every convolution (NNCF's overflow fix; its default does the first only).
# CPUs without VNNI (AVX2, and AVX-512 before it) sum u8 x s8 products in 16 bits, which saturate
# with 8-bit weights: tiny v8's int8 graph, checked at a cost of 0.017 dB on an AVX-512 VNNI
# machine, cost 0.050 dB on set 1 and 0.15 on set 4 on an AVX2-only Zen 3. With 7-bit weights
# nothing saturates, so the graph computes alike on both kinds (0.019 dB there), at the same speed.
OVERFLOW_FIX = "enable"


def check_graph(onnx_path: Path):
    """Read a uint8-frame ONNX graph (``livesharp.export.export_onnx(..., io="uint8")``) into OpenVINO."""
    ov = openvino()

    if onnx_path.suffix != ".onnx" or not onnx_path.is_file():
        raise LivesharpError(f"{onnx_path}: no such ONNX graph; give the model's uint8-frame NAME.onnx")
    try:
        model = ov.Core().read_model(str(onnx_path))
    except RuntimeError as e:
        raise LivesharpError(f"{onnx_path}: OpenVINO cannot read it ({str(e).splitlines()[0]})") from None
    inputs = {i.get_any_name(): i.get_element_type().get_type_name() for i in model.inputs}
    if inputs != {"input": "u8", "strength": "f32"}:
        raise LivesharpError(f"{onnx_path}: not a uint8-frame graph (inputs {inputs}); export one with livesharp.export.export_onnx(net, path, io='uint8')")
    return model


def calibration_frames(dirs: Sequence[str | Path], count: int = 128, crop: int = 256, seed: int = 99,
                       forbidden: Sequence[str | Path] = (), progress: bool = True) -> list[np.ndarray]:
    """``count`` blurry crops, each (1, crop, crop, 3) uint8, rendered by ``TrajectoryBlur``
    from the stills in ``dirs`` (sample ``i`` always from the same still and motion: ``seed``).

    forbidden: folders no calibration image may come from (the validation sets).
    """
    from train.motion import TrajectoryBlur

    stills = list_images(list(dirs))
    walls = [Path(f).resolve() for f in forbidden]
    for p in stills:
        if any(p.resolve().is_relative_to(w) for w in walls):
            raise LivesharpError(f"--calib: {p} is in a validation folder; calibrate on other images, or the check measures what calibration saw")
    blur = TrajectoryBlur(stills, crop=crop, clip_len=1, seed=seed, length=count)
    return [to_uint8(blur[i]["blur"][0])[None] for i in tqdm(range(count), desc="calibration crops", disable=not progress, dynamic_ncols=True)]


def end_convolutions(model) -> list[str]:
    """The first and last convolutions of a graph in execution order, by name."""
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    return [convs[0], convs[-1]] if len(convs) > 1 else convs


def quantize(model, frames: list[np.ndarray], keep_float: Sequence[str] = ()):
    """NNCF post-training int8 of an OpenVINO uint8-frame model, calibrated on ``frames``: the
    convolutions, but those named in ``keep_float`` or matching ``FLOAT_NAMES``, with 7-bit
    weights (``OVERFLOW_FIX``); ``FLOAT_OPS`` stay in float."""
    import nncf

    data = nncf.Dataset([{"input": f, "strength": np.ones(1, np.float32)} for f in frames])
    # validate=False: a network without norms (conv32) has no ReduceMean or centre to ignore
    scope = nncf.IgnoredScope(names=list(keep_float), patterns=list(FLOAT_NAMES), types=list(FLOAT_OPS), validate=False)
    fix = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(OVERFLOW_FIX))
    with _nncf_output_on_stderr():
        return nncf.quantize(model, data, subset_size=len(frames), ignored_scope=scope, advanced_parameters=fix)


@contextlib.contextmanager
def _nncf_output_on_stderr():
    """NNCF draws its progress bars on stdout and its log has a handler bound to stdout, but
    stdout carries this command's (and train.ship's) report. Both go to stderr meanwhile, and
    the log says only warnings (at INFO it lists every operation the ignored scope leaves out)."""
    import logging

    log = logging.getLogger("nncf")
    streams = [(h, h.setStream(sys.stderr)) for h in log.handlers if isinstance(h, logging.StreamHandler)]
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        log.setLevel(level)
        for h, old in streams:
            h.setStream(old)


class Compiled:
    """An OpenVINO model compiled on the CPU for each frame shape it meets, at one precision hint:
    (N, H, W, 3) uint8 frames in, the same out. Unlike ``runtimes.OpenVinoRunner`` it takes a
    model in memory (the int8 one exists nowhere else until it has passed)."""

    def __init__(self, model, hint: str, threads: int | None = None):
        ov = openvino()

        self.core, self.model = ov.Core(), model
        self.config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"} | ({"INFERENCE_NUM_THREADS": threads} if threads else {})
        self.requests: dict[tuple[int, ...], object] = {}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if frames.shape not in self.requests:
            model = self.model.clone()
            model.reshape({"input": list(frames.shape), "strength": [1]})
            self.requests[frames.shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        return self.requests[frames.shape].infer({"input": frames, "strength": np.ones(1, np.float32)})[0].copy()

    def method(self):
        """As a ``train.evaluate`` method: (N, 3, H, W) float in [0, 1] -> the same."""
        def run(x: torch.Tensor) -> torch.Tensor:
            out = self(np.stack([to_uint8(f) for f in x]))
            return torch.stack([from_uint8(f) for f in out])

        return run


class Progress:
    """A dataset that advances a tqdm bar as ``evaluate`` reads it."""

    def __init__(self, dataset, desc: str, enabled: bool):
        self.dataset, self.bar = dataset, tqdm(total=len(dataset), desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        self.bar.update()
        if self.bar.n == len(self):
            self.bar.close()
        return item


def measure(methods: dict[str, Compiled], pairs: PairFolder, sharp: SharpFrames, progress: bool) -> dict[str, dict]:
    """Set 1 (mean and worst gain over the blurry input) and set 3 (PSNR(output, input), shift)
    of each method, with ``train.evaluate``'s metrics."""
    fns = {name: c.method() for name, c in methods.items()}
    real = evaluate({"input": lambda x: x} | fns, Progress(pairs, "set 1 " + "/".join(fns), progress))
    harm = evaluate(fns, Progress(sharp, "set 3 " + "/".join(fns), progress), gains=False)
    return {name: {"set1_gain_db": real[name]["gain"], "set1_worst_gain_db": real[name]["worst_gain"],
                   "set3_psnr_db": harm[name]["psnr"], "set3_shift": harm[name]["shift"]} for name in fns}


def time_720p(methods: dict[str, Compiled], repeats: int = 7, runs: int = 8) -> dict[str, float]:
    """Milliseconds per 1280x720 frame of each method: the median of ``repeats`` means of
    ``runs`` calls, after warm-up. The methods take turns within each repeat, so a machine
    that gets busier or quieter meanwhile shifts them all alike."""
    frame = np.random.default_rng(0).integers(0, 256, (1, 720, 1280, 3), dtype=np.uint8)
    means: dict[str, list[float]] = {name: [] for name in methods}
    for run in methods.values():
        for _ in range(3):
            run(frame)
    for _ in range(repeats):
        for name, run in methods.items():
            t = time.perf_counter()
            for _ in range(runs):
                run(frame)
            means[name].append((time.perf_counter() - t) / runs * 1000)
    return {name: round(statistics.median(m), 2) for name, m in means.items()}


def command_line(onnx_path: Path, out_xml: Path | None, calib, val_real, val_sharp, max_cost, keep_ends, crops, crop, seed) -> str:
    """The command that makes this graph again, as recorded in its metadata: paths relative to
    the folder it ran in (the repository root), so the shipped IR names no one's home folder."""
    rel = os.path.relpath
    args = ["python", "-m", "train.quantize", rel(onnx_path), *(["--out", rel(out_xml)] if out_xml else []),
            "--calib", *map(rel, calib), "--crops", str(crops), "--crop", str(crop), "--seed", str(seed),
            "--val-real", rel(val_real), "--val-sharp", *map(rel, val_sharp), "--max-cost", str(max_cost)]
    return shlex.join(args + (["--keep-ends"] if keep_ends else []))


def quantize_checked(onnx_path: str | Path, calib: Sequence[str | Path] = CALIB, val_real: str | Path = VAL_REAL,
                     val_sharp: Sequence[str | Path] = VAL_SHARP, max_cost: float = MAX_COST_DB, keep_ends: bool = False,
                     crops: int = 128, crop: int = 256, seed: int = 99, min_sharp_psnr: float = HARM_MIN_PSNR,
                     max_shift: float = HARM_MAX_SHIFT, threads: int | None = None, bench: bool = False,
                     progress: bool = True, out_xml: str | Path | None = None):
    """Quantize and check (steps 1-3 of the module docstring): ``(report, int8 model)``, the
    model the first attempt that passed made, or None. Writes nothing.

    report: {"passed", "chosen" (attempt name or None), "digest" (of the float graph), "bar",
    "fp32"/"bf16": set numbers, "attempts": [{"name", "kept_float", set numbers, "cost_db",
    "passed"}], "calibration": {..., "command"}, "nncf", "openvino", "cpu" (the kind and model
    the numbers were measured on), ["ms_720p"]}.
    """
    ov = openvino()  # first: NNCF then finds OpenVINO's telemetry off too
    try:
        import nncf
    except ImportError:
        raise LivesharpError('train.quantize needs nncf: pip install "livesharp[train]" (or pip install nncf)') from None

    onnx_path = Path(onnx_path)
    model = check_graph(onnx_path)
    try:
        pairs = PairFolder(val_real)
        sharp = SharpFrames(list_images(list(val_sharp)))
        frames = calibration_frames(calib, crops, crop, seed, forbidden=[val_real, *val_sharp, VAL_REAL, *VAL_SHARP], progress=progress)
    except DataError as e:
        raise LivesharpError(str(e)) from None

    caps = int8.cpu_capabilities()
    floats = {"fp32": Compiled(model, "f32", threads)} | ({"bf16": Compiled(model, "bf16", threads)} if int8.bf16_native(caps) else {})
    report = {"source": str(onnx_path), "digest": int8.graph_digest(onnx_path),
              "bar": {"max_cost_db": max_cost, "min_set3_psnr_db": min_sharp_psnr, "max_abs_set3_shift": max_shift},
              **measure(floats, pairs, sharp, progress), "attempts": []}
    hint = int8.openvino_hint("int8", caps)
    chosen = quantized = None
    for name, keep in [("plain", []), ("keep-ends", end_convolutions(model))][1 if keep_ends else 0:]:
        t = time.perf_counter()
        quantized = quantize(model, frames, keep)
        numbers = measure({"int8": Compiled(quantized, hint, threads)}, pairs, sharp, progress)["int8"]
        cost = report["fp32"]["set1_gain_db"] - numbers["set1_gain_db"]
        passed = cost <= max_cost and numbers["set3_psnr_db"] >= min_sharp_psnr and abs(numbers["set3_shift"]) <= max_shift
        attempt = {"name": name, "kept_float": keep, "hint": hint, **numbers, "cost_db": cost, "passed": passed,
                   "seconds": round(time.perf_counter() - t, 1)}
        if "bf16" in report:
            attempt["cost_vs_bf16_db"] = report["bf16"]["set1_gain_db"] - numbers["set1_gain_db"]
        report["attempts"].append(attempt)
        if progress:
            tqdm.write(f"int8 {name}: cost {cost:+.4f} dB (gain {numbers['set1_gain_db']:+.4f} vs fp32 {report['fp32']['set1_gain_db']:+.4f}), "
                       f"set 3 {numbers['set3_psnr_db']:.2f} dB shift {numbers['set3_shift']:+.3f}: {'passed' if passed else 'failed'}", file=sys.stderr)
        if passed:
            chosen = (name, quantized)
            break
    report["passed"], report["chosen"] = chosen is not None, chosen[0] if chosen else None
    report["calibration"] = {"dirs": [os.path.relpath(d) for d in calib], "crops": crops, "crop": crop, "seed": seed,
                             "command": command_line(onnx_path, Path(out_xml) if out_xml else None, calib, val_real, val_sharp, max_cost, keep_ends, crops, crop, seed)}
    report["nncf"], report["openvino"] = nncf.__version__, ov.get_version()
    # The set numbers are this CPU's: an int8 graph can compute differently on another kind.
    report["cpu"] = f"{int8.cpu_kind(caps)}: {int8.cpu_model()} ({int8.cpu_generation()})"
    if bench:
        report["ms_720p"] = time_720p(floats | {"int8": Compiled(chosen[1] if chosen else quantized, hint, threads)})
    return report, chosen[1] if chosen else None


def check_out(out_xml: str | Path) -> Path:
    out_xml = Path(out_xml)
    if out_xml.suffix != ".xml" or not out_xml.parent.is_dir():
        raise LivesharpError(f"--out {out_xml}: give NAME.xml in an existing folder (OpenVINO writes NAME.bin beside it)")
    return out_xml


def write_int8(model, out_xml: str | Path, report: dict) -> Path:
    """Write a passing int8 model as OpenVINO IR (``out_xml`` + ``.bin``, atomically), its rt_info
    holding what ``livesharp.int8.int8_graph`` checks and the numbers that let it ship."""
    ov = openvino()

    out_xml = Path(out_xml)
    attempt = next(a for a in report["attempts"] if a["name"] == report["chosen"])
    meta = {int8.DIGEST_KEY: report["digest"], int8.PASSED_KEY: "true", int8.COST_KEY: f"{attempt['cost_db']:.4f}",
            "livesharp_int8_kept_float": " ".join(attempt["kept_float"]),
            "livesharp_int8_set1_gain_db": f"{attempt['set1_gain_db']:.4f}", "livesharp_fp32_set1_gain_db": f"{report['fp32']['set1_gain_db']:.4f}",
            "livesharp_int8_set3_psnr_db": f"{attempt['set3_psnr_db']:.3f}", "livesharp_int8_set3_shift": f"{attempt['set3_shift']:.3f}",
            "livesharp_int8_checked_with": attempt["hint"],
            "livesharp_int8_checked_on": report["cpu"], "livesharp_int8_calibration": report["calibration"]["command"],
            "livesharp_nncf_version": report["nncf"], "livesharp_openvino_version": report["openvino"]}
    for key, value in meta.items():
        model.set_rt_info(value, key)
    with atomic_output(out_xml, companions=(".bin",)) as tmp:
        ov.save_model(model, str(tmp), compress_to_fp16=False)
    return out_xml


def quantize_shipped(onnx_path: Path, out_xml: Path, **options) -> dict | None:
    """Make, check and write the int8 graph of a shipped float graph (the whole module docstring).

    onnx_path: the model's uint8-frame ONNX graph. out_xml: where the IR goes, normally
    ``livesharp.int8.int8_path(onnx_path)`` (``int8_graph`` looks there).
    options: those of ``quantize_checked`` (calib, val_real, val_sharp, max_cost, keep_ends,
    crops, crop, seed, min_sharp_psnr, max_shift, threads, bench, progress); the defaults use
    ../shared/data beside the repository.

    Returns the report (see ``quantize_checked``) once the IR is written; None, writing
    nothing, when no attempt passed the bar.
    """
    out_xml = check_out(out_xml)
    report, model = quantize_checked(onnx_path, out_xml=out_xml, **options)
    if model is None:
        return None
    write_int8(model, out_xml, report)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.quantize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graph", type=Path, help="the model's uint8-frame ONNX graph")
    p.add_argument("--out", type=Path, default=None, help="the int8 IR to write (default: beside the graph, NAME.int8.xml)")
    p.add_argument("--calib", nargs="+", type=Path, default=list(CALIB), metavar="DIR", help="folders of stills to render calibration crops from (default: Kodak, Urban100, McMaster in ../shared/data)")
    p.add_argument("--crops", type=int, default=128, help="calibration crops (default 128)")
    p.add_argument("--crop", type=int, default=256, help="calibration crop side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=99, help="seed of the calibration crops (default 99)")
    p.add_argument("--val-real", type=Path, default=VAL_REAL, metavar="DIR", help="set 1: real blurry/sharp pairs, DIR/blur/X and DIR/sharp/X")
    p.add_argument("--val-sharp", nargs="+", type=Path, default=list(VAL_SHARP), metavar="DIR", help="set 3: folders of sharp frames")
    p.add_argument("--max-cost", type=float, default=MAX_COST_DB, help="most set 1 gain int8 may lose, dB (default 0.05)")
    p.add_argument("--keep-ends", action="store_true", help="keep the first and last convolutions in float from the start")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for OpenVINO (default: all)")
    p.add_argument("--bench", action="store_true", help="also time fp32, bf16 and int8 on a 1280x720 frame")
    p.add_argument("--json", type=Path, default=None, help="write the report here too")
    a = p.parse_args(argv)
    out = a.out or int8.int8_path(a.graph)
    try:
        check_out(out)
        report, model = quantize_checked(a.graph, calib=a.calib, val_real=a.val_real, val_sharp=a.val_sharp, max_cost=a.max_cost,
                                         keep_ends=a.keep_ends, crops=a.crops, crop=a.crop, seed=a.seed, threads=a.threads,
                                         bench=a.bench, out_xml=out)
        if model is not None:
            write_int8(model, out, report)
    except LivesharpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        with atomic_output(a.json) as tmp:
            tmp.write_text(text + "\n")
    print(f"wrote {out}" if model is not None else f"int8 failed the bar (cost <= {a.max_cost} dB, set 3 >= {HARM_MIN_PSNR} dB, "
          f"|shift| <= {HARM_MAX_SHIFT}): nothing written", file=sys.stderr)
    return 0 if model is not None else 1


if __name__ == "__main__":
    sys.exit(main())

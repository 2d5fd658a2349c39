"""The frontier sweep (issue 12): student variants trained on one fixed recipe, scored on the
sets that count, and timed on the runtime users get.

    python -m train.frontier train [NAME ...]   # each variant from scratch, in turn (resumable)
    python -m train.frontier table [NAME ...]   # set 1 / set 3 of each, and 720p ms float/int8 (quiet machine)

Every variant starts from fresh weights (a checkpoint of ``Student(cfg)`` written before the
first step, passed as ``--init``) and runs ``train.distill`` with the same data, seed, steps and
learning rate, so the only difference between rows is the network. A killed sweep resumes
where it stopped: finished variants are skipped, an interrupted one continues with ``--resume``.
The data is ``../shared/data`` (``--data-root``); nothing here is used by the product.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from livesharp.model import Student, StudentConfig, VARIANTS, count_macs, load_student, save_student

_conv = dict(unshuffle=4, edge_kernel=3, block="conv", zero_mean=True)
# v1's tiny: 1/4 res 16 ch, three levels, 1x1 ends (the shipped tiny is now its naf16-m4 row)
_naf16 = StudentConfig(unshuffle=4, width=16, enc_blocks=(1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1), edge_kernel=1, zero_mean=True)
FRONTIER: dict[str, tuple[StudentConfig, str]] = {
    "conv32": (VARIANTS["conv32"], "shipped tiny v2/v3: 1/4 res 32 ch, three blocks at 1/8 (64 ch)"),
    "conv24-2lvl": (StudentConfig(width=24, enc_blocks=(1, 1), middle_blocks=3, dec_blocks=(1, 1), **_conv),
                    "two levels down: three blocks at 1/16 (96 ch), the widest reach"),
    "conv32-m4": (StudentConfig(width=32, enc_blocks=(1,), middle_blocks=4, dec_blocks=(1,), **_conv),
                  "more depth at the lowest resolution: four blocks at 1/8"),
    "naf16": (_naf16, "tiny v1's NAFBlocks (LayerNorm, gates, depthwise), 1x1 intro"),
    "conv32-m2": (StudentConfig(width=32, enc_blocks=(1,), middle_blocks=2, dec_blocks=(1,), **_conv),
                  "cheaper: two blocks at 1/8"),
    "naf16-m4": (replace(_naf16, middle_blocks=4), "naf16 with four blocks at 1/32 (128 ch), as NAFNet deepens its middle"),
    "naf16-e3": (replace(_naf16, edge_kernel=3), "naf16 with 3x3 first and last convolutions (fine detail at 1/4)"),
    "naf24": (replace(_naf16, width=24), "naf16 widened to 24 channels"),
}

# One recipe for every row: v3's data and loss, from scratch, with a short fixed schedule.
STEPS = 3000


def recipe(root: Path, steps: int) -> list[str]:
    s = str(root)
    return ["--highfps", f"{s}/gopro240_GOPR0477_11_00/GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv", "--camera",
            "--motion", *(f"{s}/{d}" for d in ("urban100_hr_q95", "div2k_valid_subset", "bsd100_hr_q95", "kodak24_crop500",
                                                "mcmaster18", "set5_set14", "pkg_images")),
            "--motion-fraction", "0.6", "--linear-fraction", "0.15",
            "--val-real", f"{s}/gopro_real_pairs_val", "--val-sharp", f"{s}/gopro_test_sharp_frames",
            "--batch", "16", "--clip-len", "1", "--crop", "128", "--curriculum", "128", "--ckpt-every", "250",
            "--workers", "1", "--lr", "2e-3", "--seed", "0", "--steps", str(steps), "--eval-every", str(steps)]


def train(names: list[str], out: Path, root: Path, steps: int) -> None:
    for name in names:
        run = out / name
        if (run / "student.pt").is_file():
            print(f"{name}: done, skipped", file=sys.stderr)
            continue
        run.mkdir(parents=True, exist_ok=True)
        init = run / "init.pt"
        if not init.is_file():
            torch.manual_seed(0)
            save_student(Student(FRONTIER[name][0]), init)
        resume = ["--resume"] if (run / "last.pt").is_file() else []
        cmd = [sys.executable, "-m", "train.distill", "--init", str(init), *recipe(root, steps), "--out", str(run), *resume]
        print(f"{name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        # train/ is not installed: the run finds it in this checkout, wherever this was started from
        path = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))
        subprocess.run(cmd, check=True, env=os.environ | {"PYTHONPATH": path})


def compiled_720p(net: Student, calibration: list[np.ndarray], folder: Path) -> dict:
    """``net`` as users run it under OpenVINO on this machine, both ways: ``float``, its graph at
    the precision ``auto`` gives it (bf16 where native), and ``int8``, that graph quantized by NNCF
    on ``calibration``; each a ``train.quantize.Compiled`` on both threads, its graphs in ``folder``."""
    from livesharp import int8
    from livesharp.export import export_onnx
    from train.quantize import Compiled, check_graph, quantize

    caps = int8.cpu_capabilities()
    model = check_graph(export_onnx(net, Path(tempfile.mkdtemp(dir=folder)) / "g.onnx", io="uint8"))  # one folder per net
    return {"float": Compiled(model, int8.openvino_hint(int8.choose_precision("auto", caps), caps), threads=2),
            "int8": Compiled(quantize(model, calibration), int8.openvino_hint("int8", caps), threads=2)}


def time_720p(net: Student, calibration: list[np.ndarray]) -> dict[str, float]:
    """ms per 1280x720 uint8 frame of ``compiled_720p``'s two graphs, timed in turns
    (``train.quantize.time_720p``)."""
    from train.quantize import time_720p as timed

    with tempfile.TemporaryDirectory() as tmp:
        return timed(compiled_720p(net, calibration, Path(tmp)))


def _random(cfg: StudentConfig) -> Student:
    torch.manual_seed(0)
    net = Student(cfg).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.02)
    return net


def table(names: list[str], out: Path, calib: list[Path]) -> str:
    """The frontier as a markdown table (and ``out/frontier.json``); timed where ``calib``
    (folders of stills for int8 calibration) is given."""
    from train.quantize import calibration_frames

    rows = ["| variant | what | params | GMAC/MP | 720p ms float / int8 | set 1 gain (worst) | set 3 PSNR / shift |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    results = {}
    calibration = calibration_frames(calib, count=16, progress=False) if calib else []
    for name in names:
        cfg, what = FRONTIER[name]
        scored = out / name / "student.pt"
        # the trained weights where there are some (int8 calibrates on them); time does not
        # depend on the weights otherwise, but all-zero ones could be skipped, so random
        net = load_student(scored) if scored.is_file() else _random(cfg)
        params, gmac = sum(p.numel() for p in net.parameters()) / 1e6, count_macs(net) / 1e9
        ms = time_720p(net, calibration) if calibration else {}
        v = torch.load(scored, map_location="cpu", weights_only=True).get("validation", {}) if scored.is_file() else {}
        real, sharp = v.get("real", {}).get("student"), v.get("sharp", {}).get("student")
        results[name] = dict(params_m=params, gmac_mp=gmac, ms_720p=ms, real=real, sharp=sharp)
        gain = f"{real['gain']:+.3f} ({real['worst_gain']:+.3f})" if real else "not trained"
        harm = f"{sharp['psnr']:.2f} / {sharp['shift']:+.2f}" if sharp else ""
        speed = f"{ms['float']:.1f} / {ms['int8']:.1f}" if ms else "not timed"
        rows.append(f"| `{name}` | {what} | {params:.2f} M | {gmac:.2f} | {speed} | {gain} | {harm} |")
    (out / "frontier.json").write_text(json.dumps(results, indent=1))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.frontier", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["train", "table"])
    p.add_argument("names", nargs="*", help=f"variants (default: all): {', '.join(FRONTIER)}")
    p.add_argument("--out", default="runs/frontier", help="one folder per variant (default: runs/frontier)")
    p.add_argument("--data-root", default="../shared/data", help="folder holding the datasets (default: ../shared/data)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"training steps per variant (default: {STEPS})")
    p.add_argument("--no-time", action="store_true", help="table without the 720p timing (a busy machine times wrong)")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in FRONTIER]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}: choose from {', '.join(FRONTIER)}")
    names = args.names or list(FRONTIER)
    if args.action == "train":
        train(names, Path(args.out), Path(args.data_root), args.steps)
    else:
        root = Path(args.data_root)
        calib = [] if args.no_time else [root / d for d in ("kodak24_crop500", "urban100_hr_q95", "mcmaster18")]
        print(table(names, Path(args.out), calib))
    return 0


if __name__ == "__main__":
    sys.exit(main())

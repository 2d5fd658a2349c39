"""720p milliseconds of every student shape under OpenVINO on this machine, float and int8.

    python benchmarks/variant_speed.py                       # the table in benchmarks/README.md
    python benchmarks/variant_speed.py tiny small --json speed.json

Each variant (``train.frontier``'s rows, and ``small`` and ``tiny-detail``) is built with random
weights (speed does not depend on them), exported as ``livesharp export`` exports it (uint8 in and
out) and compiled on both threads: the float graph at the precision ``--precision auto`` gives it
(bf16 where the CPU computes it, else fp32) and its int8 graph (NNCF, calibrated on 8
motion-blurred Kodak crops), as ``train.frontier`` times a row (``compiled_720p``). All graphs are
timed in turns in one process (``train.quantize.time_720p``), so a machine that gets busier
meanwhile slows them alike; the ratios to ``tiny`` are what carry across sessions. Needs ``../shared/data`` (or ``--data``) and a
quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    sys.path.insert(0, str(ROOT))  # train/ is not installed: this checkout's

    from livesharp import int8
    from livesharp.model import VARIANTS, count_macs
    from train.frontier import FRONTIER, _random, compiled_720p
    from train.quantize import calibration_frames, time_720p

    shapes = {"tiny": VARIANTS["tiny"], **{name: cfg for name, (cfg, _) in FRONTIER.items() if name != "naf16-m4"},
              "small": VARIANTS["small"], "tiny-detail": VARIANTS["tiny-detail"]}
    p = argparse.ArgumentParser(prog="python benchmarks/variant_speed.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"variants (default: all of {', '.join(shapes)}; tiny is always timed, the reference)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding kodak24_crop500 (int8 calibration)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in shapes]
    if unknown:
        p.error(f"no variant {', '.join(unknown)}: choose from {', '.join(shapes)}")
    names = ["tiny", *[n for n in (args.names or shapes) if n != "tiny"]]
    calibration = calibration_frames([f"{args.data}/kodak24_crop500"], count=8, progress=False)
    graphs, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            net = _random(shapes[name])
            for kind, run in compiled_720p(net, calibration, Path(tmp)).items():
                graphs[f"{name} {kind}"] = run
            sizes[name] = (sum(p.numel() for p in net.parameters()) / 1e6, count_macs(net) / 1e9)
            print(f"{name}: compiled", file=sys.stderr, flush=True)
        ms = time_720p(graphs)
    caps = int8.cpu_capabilities()
    print(f"{int8.cpu_model()} ({int8.cpu_kind(caps)}); float graphs in {int8.float_precision(caps)}")
    print("| variant | params | GMAC/MP | 720p ms float / int8 | vs tiny |")
    print("| --- | --- | --- | --- | --- |")
    rows = {}
    for name in names:
        f, q = ms[f"{name} float"], ms[f"{name} int8"]
        rows[name] = dict(params_m=round(sizes[name][0], 2), gmac_mp=round(sizes[name][1], 2), float_ms=f, int8_ms=q)
        print(f"| `{name}` | {sizes[name][0]:.2f} M | {sizes[name][1]:.2f} | {f:.1f} / {q:.1f} | "
              f"{f / ms['tiny float']:.2f} / {q / ms['tiny int8']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(cpu=int8.cpu_model(), kind=int8.cpu_kind(caps), variants=rows), indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()

"""720p milliseconds of every student shape under OpenVINO on this machine, float and int8.

    python benchmarks/variant_speed.py                       # the table in benchmarks/README.md
    python benchmarks/variant_speed.py tiny small --json speed.json

Each variant (``train.frontier``'s rows, and ``small`` and ``tiny-detail``) is built with random
weights (speed does not depend on them), exported as ``livesharp export`` exports it (uint8 in and
out) and compiled as ``train.quantize.Compiled`` runs it on both threads: the float graph at the
precision ``--precision auto`` gives it (bf16 where the CPU computes it, else fp32) and its int8
graph (NNCF, calibrated on a few Kodak crops). All graphs are timed in turns in one process
(``train.quantize.time_720p``), so a machine that gets busier meanwhile slows them alike; the
ratios to ``tiny`` are what carry across sessions. Needs ``../shared/data`` (or ``--data``) and a
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
    from livesharp.export import export_onnx
    from livesharp.model import VARIANTS, count_macs
    from train.data import list_images, read_rgb
    from train.frontier import FRONTIER, _random
    from train.quantize import Compiled, check_graph, quantize, time_720p

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
    calibration = [read_rgb(path)[None, :256, :256] for path in list_images([f"{args.data}/kodak24_crop500"])[:8]]
    caps = int8.cpu_capabilities()
    graphs, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            net = _random(shapes[name])
            model = check_graph(export_onnx(net, Path(tmp) / f"{name}.onnx", io="uint8"))
            graphs[(name, "float")] = Compiled(model, int8.openvino_hint(int8.choose_precision("auto", caps), caps), threads=2)
            graphs[(name, "int8")] = Compiled(quantize(model, calibration), int8.openvino_hint("int8", caps), threads=2)
            sizes[name] = (sum(p.numel() for p in net.parameters()) / 1e6, count_macs(net) / 1e9)
            print(f"{name}: compiled", file=sys.stderr, flush=True)
        ms = time_720p({f"{name} {kind}": run for (name, kind), run in graphs.items()})
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

"""Speed benchmarks against issue #5's targets: model-only, file mode, and live, per backend.

    python benchmarks/bench.py --runs 3 --json benchmarks/results-cpu-2core.json

Every number is the median of ``--runs`` runs, and every ratio is taken within the same run
(these machines are noisy). Model-only and file-mode figures come from ``livesharp bench``
(``livesharp.bench.run_bench``); this script adds the live figures and the ``small`` variant,
and prints the targets table for benchmarks/README.md. It needs no data beyond livesharp's own
demo clip: every clip is made from it at the size measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from unittest import mock

import livesharp.settings

livesharp.settings.apply_thread_policy()  # before torch loads OpenMP, as the CLI does

import numpy as np  # noqa: E402

from livesharp.bench import default_backends, format_table, make_clip, run_bench  # noqa: E402
from livesharp.engine import Sharpener  # noqa: E402
from livesharp.model import VARIANTS, Student, save_student  # noqa: E402
from livesharp.live import run_camera  # noqa: E402
from livesharp.settings import cpu_cores, shipped_graph, shipped_weights  # noqa: E402
from livesharp.sources import FileSource  # noqa: E402


def live(model: str, backend: str, clip: Path, frames: int = 240, threads: int | None = None) -> dict:
    """``livesharp cam`` with the clip looping as a 30 FPS camera, no preview; inference on
    ``threads`` threads (default: what ``livesharp cam`` uses, ``cpu_threads(live=True)``)."""
    with Sharpener(model=model, device="cpu", backend=backend, threads=threads, live=True) as s:
        source = FileSource(clip, loop=True)
        # As livesharp cam does before its first frame (live.run_live). Until 2026-12-03 this
        # row left it out, so OpenVINO compiled during the first frame and the session's
        # seconds, its drops and its FPS included that wait, which no user's session has.
        s.warm_up(source.height, source.width)
        r = run_camera(source, sharpener=s, max_frames=frames)
    lat = np.array(r.latency_ms[15:])  # the first frames' latency is the threads starting
    return {"fps": r.fps, "latency_mean_ms": float(lat.mean()), "latency_p95_ms": float(np.percentile(lat, 95)), "dropped": r.dropped}


@contextlib.contextmanager
def float_graph_only(name: str, tmp: Path):
    """The shipped model ``name`` without its int8 graph: what ``--precision auto`` runs on a CPU
    without int8 instructions (bf16 where native, else fp32), for the int8-vs-bf16 rows."""
    folder = tmp / "float-only"
    folder.mkdir()
    for src in (shipped_weights(name), shipped_graph(name)):
        shutil.copy(src, folder / src.name)
    with mock.patch.dict(os.environ, {"LIVESHARP_MODELS": str(folder)}):
        yield


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="variant name or checkpoint for the tiny rows")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", default=None, help="write all results here")
    a = p.parse_args()
    med = statistics.median
    backends = default_backends("cpu")
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Speed does not depend on the weights: `small` has no shipped weights yet, so a random one.
        small = tmp / "small.pt"
        save_student(Student(VARIANTS["small"]), small)

        res["tiny_batch1"] = run_bench([(1280, 720), (640, 480)], model=a.model, backends=backends, batch=1, runs=a.runs, device="cpu", preset="veryfast")
        print(format_table(res["tiny_batch1"]), flush=True)
        # `livesharp file` as it runs by default (batch 4, libx264 medium); the rows above use
        # veryfast, the cheapest encode a user would pick, where the network weighs most.
        res["tiny_file_batch4"] = run_bench([(1280, 720)], model=a.model, backends=backends, batch=4, runs=a.runs, device="cpu", preset="medium")
        print(format_table(res["tiny_file_batch4"]), flush=True)
        res["small_batch1"] = run_bench([(640, 480)], model=str(small), backends=backends, batch=1, runs=a.runs, device="cpu", preset="veryfast")
        print(format_table(res["small_batch1"]), flush=True)
        # What --precision auto buys: the same 720p rows in full precision.
        res["tiny_batch1_fp32"] = run_bench([(1280, 720)], model=a.model, backends=backends, batch=1, runs=a.runs, device="cpu", preset="veryfast", precision="fp32")
        print(format_table(res["tiny_batch1_fp32"]), flush=True)
        # What int8 buys: where the model ships an int8 graph and the CPU has VNNI/AMX-INT8,
        # auto above ran int8; the same rows with the float graph alone (bf16 where native).
        if a.model == "tiny" and "openvino" in backends:
            with float_graph_only(a.model, tmp):
                res["tiny_batch1_float_graph"] = run_bench([(1280, 720)], model=a.model, backends=["openvino"], batch=1, runs=a.runs, device="cpu", preset="veryfast")
            print(format_table(res["tiny_batch1_float_graph"]), flush=True)

        res["live"] = {}
        for w, h in ((1280, 720), (640, 480)):
            clip = tmp / f"cam{w}x{h}.mp4"
            make_clip(clip, (w, h), 150, fps=30)
            # each backend as `livesharp cam` runs it, and the best one on every core as well
            for b, threads in [*((b, None) for b in backends), (backends[-1], cpu_cores())]:
                runs = [live(a.model, b, clip, threads=threads) for _ in range(a.runs)]
                name = f"{w}x{h}/{b}" + (f"/{threads}threads" if threads else "")
                res["live"][name] = row = {k: med(r[k] for r in runs) for k in runs[0]}
                print(f"live {name}: {row['fps']:.1f} FPS of 30, latency mean {row['latency_mean_ms']:.0f} ms, "
                      f"p95 {row['latency_p95_ms']:.0f} ms, dropped {row['dropped']}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

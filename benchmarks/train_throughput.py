"""Where a training step's time goes on this machine, and samples per CPU-hour end to end.

    python benchmarks/train_throughput.py                 # stages, then both end-to-end runs
    python benchmarks/train_throughput.py --steps 200 --json benchmarks/train-throughput-avx2.json

Stages (each alone, medians): rendering one sample of each training source (the 240 fps clip
through a camera model, camera motion on stills, softness), the student's forward, the
campaign's losses, backward and AdamW on a batch of 16 crops of 128 px (as the loop was, then
with each change in turn: channels-last, fused AdamW, compiled student and losses), and one EMA
update. End to end: ``train.distill`` on the campaign's recipe for ``--steps`` steps, eager and
as ``train/campaign.sh`` runs it now (``--compile --threads N-1``: the step on all cores but the
one the data worker renders on), both with a fresh sample every draw (reusing
samples made more draws per hour that taught less: train/README.md, "What has been measured"), reading each step's
seconds from its log after a warm-up. Channels-last is on in both: its share is in the stage
table.

Needs ``../shared/data`` (or ``--data``). Run it with nothing else busy: it measures the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(fn, n: int, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def cpu_kind() -> str:
    from livesharp.int8 import cpu_kind, cpu_model

    return f"{cpu_model()}, {cpu_kind()}, {os.cpu_count()} cores"


def stages(data: Path) -> dict:
    import numpy as np
    import torch

    from livesharp.model import VARIANTS, Student
    from train.distill import DistillConfig, loss_terms
    from train.data import list_images, load_frames
    from train.gopro import HighFpsBlur, split_highfps
    from train.motion import TrajectoryBlur, with_sharp_share
    from train.soft import SoftBlur

    clip = data / "gopro240_GOPR0477_11_00" / "GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv"
    stills = [data / d for d in ("urban100_hr_q95", "div2k_valid_subset", "bsd100_hr_q95", "kodak24_crop500", "mcmaster18", "set5_set14", "pkg_images")]
    frames = load_frames(clip)
    sources = {
        "240 fps clip, camera model": HighFpsBlur(frames, window=(7, 13), frame_range=split_highfps(len(frames))[0], crop=128, length=10**6,
                                                  min_edge_energy=0.002, camera=True, sharp_fraction=0.1, linear_fraction=0.15, name="clip"),
        "camera motion on stills": TrajectoryBlur(list_images(stills), 128, 1, length=10**6, min_edge_energy=0.002,
                                                   strengths=with_sharp_share(0.1), linear_fraction=0.15),
        "softness (clip and stills)": SoftBlur([clip, *stills], crop=128, length=10**6, min_edge_energy=0.002),
    }
    out = {}
    for name, ds in sources.items():
        for i in range(30):  # decode and cache every still a sample may touch first
            ds[i]
        counter = iter(range(1000, 10**6))
        out[f"render one sample: {name}"] = median_ms(lambda: ds[next(counter)], 60, warm=0)

    x, y = torch.rand(16, 3, 128, 128), torch.rand(16, 1, 3, 128, 128)
    cfg = dataclasses.replace(DistillConfig(), w_fft=1.0)  # the campaign's loss weights

    def step_fn(layout, compiled: bool, fused: bool):
        net = Student(VARIANTS["tiny"]).to(memory_format=layout)
        opt = torch.optim.AdamW(net.parameters(), 1e-4, fused=fused)
        run, terms_of = (torch.compile(net), torch.compile(loss_terms)) if compiled else (net, loss_terms)
        inp = x.contiguous(memory_format=layout)

        def step():
            pred = run(inp).reshape(y.shape)
            terms = terms_of(cfg, pred, y, None)
            loss = sum(getattr(cfg, f"w_{k}") * v for k, v in terms.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    for label, layout, compiled, fused in (
        ("contiguous, eager, AdamW's default loop (the loop before this work)", torch.contiguous_format, False, False),
        ("channels-last, eager", torch.channels_last, False, False),
        ("channels-last, eager, fused AdamW", torch.channels_last, False, True),
        ("channels-last, compiled student and losses, fused AdamW (train/campaign.sh)", torch.channels_last, True, True),
    ):
        out[f"forward + losses + backward + AdamW, batch 16 x 128 px, {label}"] = median_ms(step_fn(layout, compiled, fused), 10, warm=3)
    net = Student(VARIANTS["tiny"])
    ema = Student(VARIANTS["tiny"])
    params = list(zip(ema.parameters(), net.parameters()))

    def ema_step():
        with torch.no_grad():
            for e, s in params:
                e.lerp_(s.detach(), 0.001)

    out["EMA update"] = median_ms(ema_step, 50)
    return out


def end_to_end(data: Path, steps: int, extra: list[str], workdir: Path) -> dict:
    """Seconds per step of the campaign's recipe run by train.distill, after a warm-up."""
    s = str(data)
    clip = f"{s}/gopro240_GOPR0477_11_00/GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv"
    stills = [f"{s}/{d}" for d in ("urban100_hr_q95", "div2k_valid_subset", "bsd100_hr_q95", "kodak24_crop500", "mcmaster18", "set5_set14", "pkg_images")]
    cmd = [sys.executable, "-m", "train.distill", "--init", "tiny", "--highfps", clip, "--camera", "--motion", *stills, "--soft", clip, *stills,
           "--soft-fraction", "0.4", "--motion-fraction", "0.6", "--linear-fraction", "0.15", "--batch", "16", "--clip-len", "1", "--crop", "128",
           "--curriculum", "128", "--w-fft", "1", "--workers", "1", "--lr", "3e-4", "--warmup", "100", "--steps", str(steps),
           "--eval-every", str(10**6), "--ckpt-every", str(10**6), "--out", str(workdir), *extra]
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "GOMP_SPINCOUNT": "20000"})
    wall = time.perf_counter() - t
    with open(workdir / "log.csv") as f:
        secs = [float(r["sec_per_step"]) for r in csv.DictReader(f)]
    steady = secs[len(secs) // 4 :]  # after start-up and compilation
    per_step = statistics.median(steady)
    return {"command": " ".join(cmd[1:]), "steps": steps, "wall_s": round(wall, 1), "median_s_per_step": round(per_step, 4),
            "mean_s_per_step_after_warmup": round(statistics.mean(steady), 4),
            "samples_per_cpu_hour": round(16 * 3600 / statistics.mean(steady) / (os.cpu_count() or 1))}


def main() -> None:
    from livesharp.settings import cpu_cores

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--steps", type=int, default=160, help="steps per end-to-end run (the first quarter is warm-up)")
    p.add_argument("--skip-stages", action="store_true")
    p.add_argument("--json", help="write the results here as well")
    a = p.parse_args()
    data = Path(a.data)
    result = {"cpu": cpu_kind(), "date": time.strftime("%Y-%m-%d")}
    if not a.skip_stages:
        result["stages_ms"] = {k: round(v, 1) for k, v in stages(data).items()}
        for k, v in result["stages_ms"].items():
            print(f"{v:9.1f} ms  {k}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result["before"] = end_to_end(data, a.steps, ["--reuse", "1"], Path(tmp) / "before")
        print(f"before (fresh samples, eager): {result['before']['median_s_per_step']} s/step, {result['before']['samples_per_cpu_hour']} samples per CPU-hour", flush=True)
        result["after"] = end_to_end(data, a.steps, ["--reuse", "1", "--compile", "--threads", str(max(1, cpu_cores() - 1))], Path(tmp) / "after")
        print(f"after (fresh samples, --compile, a core left to the data worker): {result['after']['median_s_per_step']} s/step, {result['after']['samples_per_cpu_hour']} samples per CPU-hour", flush=True)
    result["ratio"] = round(result["after"]["samples_per_cpu_hour"] / result["before"]["samples_per_cpu_hour"], 2)
    print(f"after / before: {result['ratio']}x samples per CPU-hour ({result['cpu']})")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

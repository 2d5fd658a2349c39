"""``livesharp bench``: where the time goes, per frame size and backend, on this machine.

For each size a short clip is made from the demo footage shipped with livesharp (real content,
so the encoder does real work), then, in the same run:

- decode and encode alone (ms per frame), and the decode+encode-only pipeline (``file`` with
  strength 0): the I/O floor no sharpening can beat;
- per backend, upload / inference / download ms per batch (``Sharpener.profile``), the model's
  FPS and achieved GFLOP/s, and ``file`` end to end as ``livesharp file`` runs it by default
  (up to ``FILE_BATCH`` frames per call, libx264 ``medium``).

Runs are interleaved (floor, then every backend, then again) so drift in machine load hits all
alike, and every figure is the median over runs. Ratios are taken within the same run.

It also names the CPU's kind (AVX2, AVX-512, VNNI, AMX: ``int8.cpu_kind``), says which precision
OpenVINO's ``auto`` chose and the two times it chose by (``int8.measured_precision``), and what
``livesharp cam`` would do at each size: the processing scale ``--scale auto`` starts at for a
30 FPS camera (``live.calibrate`` and ``live.ScaleGovernor``, as ``cam`` runs them) and the
sharpening gain that scale gives up.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from . import __version__, int8, live
from .engine import DEFAULT_MODEL, Sharpener, pick_device
from .errors import LivesharpError
from .io import VideoInfo, VideoReader, VideoWriter
from .pipeline import process_file
from .runtimes import BACKENDS, CPU_PREFERENCE, choose_backend, device_type, installed
from .settings import FILE_BATCH, VIDEO_DETAIL_EVERY, cpu_cores

DEMO_CLIP = Path(__file__).resolve().parent / "data" / "demo_blurry.mp4"
# The camera rate the live figures are for: what --fps asks by default.
LIVE_FPS = 30
# Sharpening gain (dB PSNR) of the shipped tiny v8 at each processing scale, on
# ../shared/data/gopro_real_pairs_val (issue 31); other models have no such figures yet.
SCALE_GAIN_DB = {"tiny": {1.0: 0.824, 0.75: 0.675, 0.5: 0.394, 0.375: 0.219}}


def cpu_name() -> str:
    return int8.cpu_model()


def default_backends(device: str) -> list[str]:
    """torch (the reference every ratio is taken against) and every other runtime installed.
    The shipped model needs no exporter (its graph ships), so a runtime alone counts."""
    if device_type(pick_device(device)) == "cuda":
        return ["torch"]
    return [b for b in BACKENDS if installed(b, export=False)]


def make_clip(path: Path, size: tuple[int, int], frames: int, fps: int = 30) -> list[np.ndarray]:
    """The demo footage resized to ``size``, looped to ``frames`` frames, as H.264 at ``path``."""
    w, h = size
    reader = VideoReader(DEMO_CLIP)
    try:
        src = [f.rgb for f in reader.frames()]
    finally:
        reader.close()
    rgb = [cv2.resize(src[i % len(src)], (w, h), interpolation=cv2.INTER_AREA) for i in range(frames)]
    info = VideoInfo(width=w, height=h, time_base=Fraction(1, fps), rate=Fraction(fps), frames=frames, duration=frames / fps)
    encode_frames(path, info, rgb, preset="veryfast")
    return rgb


def encode_frames(path: Path, info: VideoInfo, rgb: Sequence[np.ndarray], preset: str, crf: int = 18) -> int:
    """Write ``rgb`` as H.264 at ``path``, one frame per tick of ``info``'s time base; the count.
    The clip is made with it and the encoder is timed with it, so the two encode alike."""
    writer = VideoWriter(path, info, crf=crf, preset=preset)
    for i, f in enumerate(rgb):
        writer.write(f, pts=i, duration=1)
    writer.close()
    return len(rgb)


def decode_frames(path: Path) -> int:
    """Decode every frame of ``path`` (to RGB, as the pipeline's reader does); the count."""
    reader = VideoReader(path)
    try:
        return sum(1 for _ in reader.frames())
    finally:
        reader.close()


def _per_frame_ms(fn: Callable[[], int]) -> float:
    t = time.perf_counter()
    n = fn()
    return 1000 * (time.perf_counter() - t) / max(n, 1)


def run_bench(
    sizes: Sequence[tuple[int, int]] = ((1280, 720),),
    model: str = DEFAULT_MODEL,
    backends: Sequence[str] | None = None,
    batch: int = 1,
    file_batch: int = FILE_BATCH,
    frames: int = 60,
    runs: int = 3,
    device: str = "auto",
    preset: str = "medium",  # livesharp file's default: the end-to-end figure users get
    precision: str = "auto",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Measure; return the results as plain data (see ``livesharp bench --json``).

    ``batch`` is the model-only columns' frames per call; the end-to-end ones run
    ``process_file`` as ``livesharp file`` does, at most ``file_batch`` frames per call.
    """
    log = log or (lambda _msg: None)
    if runs < 1 or frames < 2 or batch < 1 or file_batch < 1:
        raise LivesharpError("--runs, --batch, --file-batch must be at least 1 and --frames at least 2")
    dev = pick_device(device)
    backends = list(backends or default_backends(device))
    for b in backends:
        # a missing or impossible backend fails before any measuring (a checkpoint that needs
        # an exporter the runtime lacks fails when its Sharpener opens, below)
        choose_backend(b, dev, export=False)
    torch = None
    if installed("torch"):
        import torch

        if "torch" not in backends:
            backends.insert(0, "torch")  # the reference for the speed-up ratios; without torch there is none
    result: dict = {
        "livesharp": __version__, "torch": torch.__version__ if torch else None, "device": dev,
        "cpu": cpu_name(), "cpu_kind": int8.cpu_kind(), "cores": cpu_cores(), "gpu": torch.cuda.get_device_name(dev) if device_type(dev) == "cuda" else None,
        "model": str(model), "precision": precision, "batch": batch, "file_batch": file_batch, "frames": frames, "runs": runs, "preset": preset, "sizes": {},
    }
    # int8 exists only as OpenVINO graphs: ONNX Runtime is left out (and said so); torch stays
    # as the speed-up ratios' reference at its own precision.
    runnable = [b for b in backends if precision != "int8" or b != "onnx"]
    if len(runnable) < len(backends):
        log("--precision int8 runs under OpenVINO only: leaving out onnx")
    if "openvino" not in runnable and precision == "int8":
        raise LivesharpError("--precision int8 runs under OpenVINO only; add --backend openvino")

    def precision_of(b: str) -> str:
        return "auto" if precision == "int8" and b == "torch" else precision

    with tempfile.TemporaryDirectory(prefix="livesharp-bench-") as tmp:
        tmp = Path(tmp)
        for w, h in sizes:
            key = f"{w}x{h}"
            log(f"{key}: making a {frames}-frame clip")
            clip = tmp / f"{key}.mp4"
            rgb = make_clip(clip, (w, h), frames)
            sharpeners = {b: Sharpener(model=model, device=str(dev) if b == "torch" else "cpu", backend=b, precision=precision_of(b),
                                       detail_every=VIDEO_DETAIL_EVERY) for b in runnable}  # as file and cam run it
            try:
                size_res = _bench_size(clip, rgb, sharpeners, batch, file_batch, runs, preset, tmp, log, key)
            finally:
                for s in sharpeners.values():
                    s.close()
            result["sizes"][key] = size_res
    return result


def _bench_size(clip, rgb, sharpeners, batch, file_batch, runs, preset, tmp, log, key) -> dict:
    med = statistics.median
    h, w = rgb[0].shape[:2]
    reader = VideoReader(clip)
    # What the encoder needs, without the input's streams: PyAV 18.1.1 refuses to read a stream
    # of a closed file (its labels, copied onto the output).
    info = dataclasses.replace(reader.info, video_stream=None, audio=[], subtitles=[], attachments=[], pictures=[])
    reader.close()
    decode, encode, floor = [], [], []
    e2e: dict[str, list[float]] = {b: [] for b in sharpeners}
    prof: dict[str, list[dict]] = {b: [] for b in sharpeners}

    def file_fps(**kw) -> float:
        out = tmp / "out.mp4"
        r = process_file(clip, out, batch=file_batch, preset=preset, progress=False, overwrite=True, **kw)
        return r.fps

    for run in range(runs):
        log(f"{key}: run {run + 1}/{runs}")
        decode.append(_per_frame_ms(lambda: decode_frames(clip)))
        encode.append(_per_frame_ms(lambda: encode_frames(tmp / "enc.mp4", info, rgb, preset)))
        # strength 0 passes frames through: decode + copy + encode, the same threads and queues.
        floor.append(file_fps(model="unsharp", strength=0.0, device="cpu"))
        for b, s in sharpeners.items():
            prof[b].append(s.profile(rgb[:batch] if len(rgb) >= batch else rgb, repeats=10))
            e2e[b].append(file_fps(sharpener=s))
    floor_fps = med(floor)
    res: dict = {"width": w, "height": h, "decode_ms": med(decode), "encode_ms": med(encode), "io_floor_fps": floor_fps, "backends": {},
                 "live": _live_scale(sharpeners, h, w, log, key)}
    torch_fps = None
    for b, s in sharpeners.items():
        stages = {k: med(p[k] for p in prof[b]) for k in prof[b][0]}
        per_batch = stages["inference_ms"]
        n = min(batch, len(rgb))
        infer_fps = 1000 * n / per_batch
        macs = s.macs_per_pixel * w * h
        if b == "torch":
            torch_fps = infer_fps
        e = med(e2e[b])
        measured = s.measured
        res["backends"][b] = {
            "precision": s.precision,
            # auto's timing of the int8 graph against the float one (None: nothing to choose between)
            "precision_measured": None if measured is None else
            {"chosen": measured.precision, "ms": measured.ms, "size": measured.size, "cached": measured.cached},
            **{k: v / n for k, v in stages.items()},  # per frame
            "inference_fps": infer_fps,
            "model_fps": 1000 * n / sum(stages.values()),  # upload + inference + download
            "end_to_end_fps": e,
            "end_to_end_ms": 1000 / e,
            "gmacs_per_frame": macs / 1e9,
            "gflops": 2 * macs * infer_fps / 1e9,
            # One convention with benchmarks/README.md: time per frame against the floor's, lower is better.
            "time_vs_io_floor": floor_fps / e,
            "inference_vs_torch": infer_fps / torch_fps if torch_fps else None,
        }
    return res


def _live_scale(sharpeners: dict, h: int, w: int, log, key: str) -> dict | None:
    """What ``cam --scale auto`` starts at for a ``LIVE_FPS`` camera of this size, under the
    runtime ``cam`` would use (the first CPU runtime measured, as ``auto`` prefers them)."""
    backend = next((b for b in CPU_PREFERENCE if b in sharpeners), None)
    if backend is None:
        return None
    s = sharpeners[backend]
    log(f"{key}: timing {backend} at each processing scale")
    ms = live.calibrate(s, h, w, runs=5)
    scale = live.ScaleGovernor(1000 / LIVE_FPS, ms).scale
    gains = SCALE_GAIN_DB.get(s.name)
    return {"backend": backend, "fps": LIVE_FPS, "scale_ms": {f"{k:g}": v for k, v in ms.items()}, "scale": scale,
            "gain_db": None if gains is None else gains[scale], "gain_db_full": None if gains is None else gains[1.0]}


def format_table(result: dict) -> str:
    """The results as one aligned table per size."""
    kind = f", {result['cpu_kind']}" if result.get("cpu_kind") and not result["gpu"] else ""
    lines = [f"livesharp {result['livesharp']}, torch {result['torch'] or 'not installed'}, {result['device']}"
             f" ({result['gpu'] or result['cpu']}{kind}, {result['cores']} cores), model {result['model']}, batch {result['batch']}"
             f" (end to end: up to {result['file_batch']}),"
             f" median of {result['runs']} runs, libx264 {result['preset']}"]
    cols = ("backend", "precision", "upload", "infer", "download", "model FPS", "GFLOP/s", "e2e FPS", "time÷floor", "infer÷torch")
    for key, r in result["sizes"].items():
        lines += ["", f"{key}: decode {r['decode_ms']:.1f} ms, encode {r['encode_ms']:.1f} ms per frame;"
                      f" decode+encode only {r['io_floor_fps']:.1f} FPS"]
        rows = [cols]
        for b, v in r["backends"].items():
            rows.append((b, v["precision"], f"{v['upload_ms']:.1f} ms", f"{v['inference_ms']:.1f} ms", f"{v['download_ms']:.1f} ms",
                         f"{v['model_fps']:.1f}", f"{v['gflops']:.1f}", f"{v['end_to_end_fps']:.1f}",
                         f"{v['time_vs_io_floor']:.2f}x", "—" if v["inference_vs_torch"] is None else f"{v['inference_vs_torch']:.2f}x"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
        lines += ["  ".join(c.rjust(wd) if i else c.ljust(wd) for i, (c, wd) in enumerate(zip(row, widths))) for row in rows]
        for b, v in r["backends"].items():
            if v.get("detail_ms") is not None:
                lines.append(f"{b}: the detail stage {v['detail_ms']:.1f} ms a frame (in model FPS; its statistics measured on every"
                             f" frame here, every {VIDEO_DETAIL_EVERY}th in file and cam)")
            m = v.get("precision_measured")
            if m:
                times = ", ".join(f"{p} {ms:.1f} ms" for p, ms in m["ms"].items())
                lines.append(f"{b} --precision auto: {m['chosen']}, measured {times} per frame at {m['size']}"
                             f"{' (cached from an earlier run)' if m['cached'] else ''}")
        lv = r.get("live")
        if lv:
            times = ", ".join(f"{k}: {ms:.1f} ms" for k, ms in lv["scale_ms"].items())
            gain = "" if lv["gain_db"] is None else \
                f"; gain {lv['gain_db']:+.3f} dB against {lv['gain_db_full']:+.3f} at scale 1 (model card)"
            lines.append(f"cam at {lv['fps']} FPS ({lv['backend']}): --scale auto starts at {lv['scale']:g} ({times}){gain}")
    return "\n".join(lines)


__all__ = ["run_bench", "format_table", "default_backends", "make_clip"]

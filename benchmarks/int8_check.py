"""NNCF post-training int8 of a student's uint8 graph: 720p time and quality (set 1 gain, set 3 harm)
against fp32 and bf16 under OpenVINO. Needs `pip install nncf` and ../shared/data.

    python benchmarks/int8_check.py livesharp/weights/livesharp-tiny.pt [keep-ends]
"""
import statistics
import sys
import time

import nncf
import numpy as np
import openvino as ov
from pathlib import Path
from livesharp.model import load_student
from livesharp.export import cached_graph
from train.data import list_images
from train.motion import TrajectoryBlur
from train.evaluate import PairFolder, SharpFrames, to_uint8
ckpt = sys.argv[1]
net = load_student(ckpt).eval()
graph = cached_graph(net)
core = ov.Core()
model = core.read_model(str(graph))
S = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
stills = list_images([S / "kodak24_crop500", S / "urban100_hr_q95", S / "mcmaster18"])
ds = TrajectoryBlur(stills, crop=256, clip_len=1, seed=99, length=len(stills))
def calib():
    for i in range(0, len(ds), max(1, len(ds) // 96)):
        x = (ds[i]["blur"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[None]
        yield {"input": x, "strength": np.array([1.0], np.float32)}
data = list(calib())
print("calibration samples", len(data), flush=True)
ignored = None
if len(sys.argv) > 2 and sys.argv[2] == "keep-ends":
    names = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "Convolution"]
    ignored = nncf.IgnoredScope(names=[names[0], names[-1]])
    print("keeping in float:", names[0], names[-1])
t = time.perf_counter()
q = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data), ignored_scope=ignored) if ignored else nncf.quantize(model, nncf.Dataset(data), subset_size=len(data))
print(f"quantized in {time.perf_counter()-t:.1f}s", flush=True)
out = Path("runs/int8")
out.mkdir(parents=True, exist_ok=True)
ov.save_model(q, str(out / "q.xml"))
def compiled(m, hint, shape):
    m = m.clone() if hasattr(m, "clone") else m
    m.reshape({"input": list(shape), "strength": [1]})
    return core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}).create_infer_request()
def run(req, frame):
    return req.infer({"input": frame[None], "strength": np.array([1.0], np.float32)})[0][0].copy()
variants = {"fp32": (core.read_model(str(graph)), "f32"), "bf16": (core.read_model(str(graph)), "bf16"), "int8": (core.read_model(str(out / "q.xml")), "bf16")}
frame = np.random.randint(0, 255, (720, 1280, 3), np.uint8)
reqs = {k: compiled(m, h, (1, 720, 1280, 3)) for k, (m, h) in variants.items()}
for k, r in reqs.items():
    for _ in range(3): run(r, frame)
    meds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(8): run(r, frame)
        meds.append((time.perf_counter() - t) / 8 * 1000)
    print(f"{k}: 720p {statistics.median(meds):.1f} ms", flush=True)
def psnr(a, b):
    return 10 * np.log10(255**2 / max(1e-10, np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))
pairs = PairFolder(S / "gopro_real_pairs_val")
sharp = SharpFrames(list_images([S / "gopro_test_sharp_frames"]))
for k, r in reqs.items():
    gains, harm, shift = [], [], []
    for i in range(len(pairs)):
        s = pairs[i]; b, g = to_uint8(s["blur"][0]), to_uint8(s["sharp"][0])
        gains.append(psnr(run(r, b), g) - psnr(b, g))
    for i in range(len(sharp)):
        x = to_uint8(sharp[i]["blur"][0]); y = run(r, x)
        harm.append(psnr(y, x)); shift.append(float(y.astype(np.float64).mean() - x.mean()))
    print(f"{k}: set1 gain {np.mean(gains):+.3f} (worst {min(gains):+.3f}), set3 {np.mean(harm):.2f} dB shift {np.mean(shift):+.2f}", flush=True)

"""Measured 720p time of student variants under OpenVINO (uint8 frames in and out): the frontier's
speed column in livesharp/weights/README.md. Random weights: time does not depend on them.

    python benchmarks/variants.py [NAME ...]
"""

import statistics
import sys
import time

import numpy as np
import torch

from livesharp.model import Student, StudentConfig, VARIANTS, count_macs
from livesharp.runtimes import cached_graph, OpenVinoRunner
C = {
 "tiny_v1": VARIANTS["tiny"],
 "A_w32_m3": StudentConfig(unshuffle=4, width=32, enc_blocks=(1,), middle_blocks=3, dec_blocks=(1,), edge_kernel=3, block="conv"),
 "B_w32_m4": StudentConfig(unshuffle=4, width=32, enc_blocks=(1,), middle_blocks=4, dec_blocks=(1,), edge_kernel=3, block="conv"),
 "C_w24_2lvl": StudentConfig(unshuffle=4, width=24, enc_blocks=(1,1), middle_blocks=3, dec_blocks=(1,1), edge_kernel=3, block="conv"),
 "D_w32_m2": StudentConfig(unshuffle=4, width=32, enc_blocks=(1,), middle_blocks=2, dec_blocks=(1,), edge_kernel=3, block="conv"),
 "E_w32_2lvl": StudentConfig(unshuffle=4, width=32, enc_blocks=(1,1), middle_blocks=2, dec_blocks=(1,1), edge_kernel=3, block="conv"),
}
names = sys.argv[1:] or list(C)
frames = np.random.randint(0, 255, (1, 720, 1280, 3), np.uint8)
for n in names:
    torch.manual_seed(0)
    net = Student(C[n]).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.02)
    r = OpenVinoRunner(cached_graph(net), threads=2, precision="auto")
    for _ in range(5): r.run(frames)
    meds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10): r.run(frames)
        meds.append((time.perf_counter() - t) / 10 * 1000)
    params = sum(p.numel() for p in net.parameters())
    print(f"{n:12s} params {params/1e6:.2f}M  GMAC/MP {count_macs(net)/1e9:.2f}  720p {statistics.median(meds):.1f} ms  ({r.precision})", flush=True)

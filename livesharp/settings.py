"""What the process and the machine decide: thread policy, thread counts, where weights live.

Nothing here imports torch, OpenCV or PyAV, and nothing happens on import: the CLI calls
``apply_thread_policy()`` before torch loads, and paths are read from the environment when they
are used, so a test or a long-lived program that changes ``LIVESHARP_MODELS`` is obeyed.

Library users who run the network on the CPU beside other work (decoding, capture) should do
what the CLI does, first thing, before anything imports torch:

>>> import livesharp.settings
>>> livesharp.settings.apply_thread_policy()
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "tiny"
# The weights shipped inside the package (package data, so a wheel, an editable install and a
# checkout all find them); $LIVESHARP_MODELS overrides.
SHIPPED_MODELS = Path(str(resources.files("livesharp") / "weights"))
# OpenMP's idle spin, in iterations: short enough to leave cores to decode and capture, long
# enough that the network's many small ops do not each pay a wake-up (see apply_thread_policy).
SPINCOUNT = "20000"
# Most frames per inference call in `livesharp file` (filled only with frames already decoded);
# `livesharp bench` runs its end-to-end figures at it too, so they are what file users get.
FILE_BATCH = 4
# `livesharp image` computes a picture larger than IMAGE_TILE pixels a side in tiles of at most
# that side (livesharp.tiling), so the network holds one tile's memory whatever the picture's
# size (tiny under OpenVINO: about 50 bytes per pixel computed at once). Neighbouring tiles
# share twice IMAGE_OVERLAP, cross-faded over it: tiny with its frame-wide averages taken out
# gave tiled pictures within one grey level of whole ones at 128, identical ones at 192; its
# averages themselves make tiles differ more than that (livesharp.tiling).
IMAGE_TILE = 2048
IMAGE_OVERLAP = 128
# In a video (`file`, `cam`) the detail stage's amounts are measured every VIDEO_DETAIL_EVERY
# frames (livesharp.detail): neighbouring frames share them, and measuring costs about as much
# as applying them.
VIDEO_DETAIL_EVERY = 16

# The processing scales ``--scale auto`` chooses among, largest first. On the shipped tiny v8
# and real blurred pairs the network gains +0.824 dB at 1, +0.675 at 0.75, +0.394 at 0.5 and
# +0.219 at 0.375 (issue 31); the detail stage runs on the full frame at every scale (set 4,
# int8 on AVX2: +2.39 dB at 1, +2.29 at 0.5, +2.27 at 0.375). 0.375 is there because on 2 AVX2 cores 0.5
# with the stage sits at the edge of a 30 FPS interval.
SCALES = (1.0, 0.75, 0.5, 0.375)


def apply_thread_policy() -> None:
    """Give OpenMP a short idle spin; call it before torch is imported (later it has no effect).

    OpenMP threads spin for a long time while idle by default; on a 2-core machine that spinning
    starves the decode and encode threads (768x432 file mode: 3.4 FPS). Never spinning
    (OMP_WAIT_POLICY=PASSIVE) fixes that but halves the network's own speed, since every small
    op then pays a wake-up. A short spin keeps both (720p, 2 cores: model 5.6 -> 13-15 FPS,
    file mode 8.9 -> 8-10 FPS vs PASSIVE). A user's own ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` is left as it is.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPINCOUNT)


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_threads(live: bool = False, backend: str = "torch") -> int:
    """Threads for CPU inference under ``backend``.

    File mode batches frames, so on a small machine inference takes every core (2 cores, 720p:
    8.5 FPS with 2 threads, 5.7 with 1). Live mode runs batch 1 beside a capture thread that
    must never stall. torch's OpenMP workers spin and starve it, so under torch one core stays
    free (2 cores, 480p: 25 FPS with 1 thread, 21 with 2). OpenVINO's workers do not: it gets the
    same cores as in file mode (2 cores, 720p camera: 25.9 FPS and 55 ms latency with 2 threads,
    18.1 FPS and 70 ms with 1; benchmarks/README.md).
    """
    cores = cpu_cores()
    if live and backend != "openvino":
        return max(1, cores - 1)
    return cores if cores <= 2 else cores - 1


def cpu_streams(live: bool = False) -> int:
    """Frames OpenVINO computes at once (``runtimes.OpenVinoRunner``): two in file mode, where
    the encoder shares the cores and throughput is what counts (2 cores, 720p, ``file`` in three
    A/Bs of 5-6 alternating runs: 145 / 141 / 129 CPU ms per frame against 165 / 149 / 139 with
    one two-thread request; ``benchmarks/README.md``); one in live mode, where each frame's
    latency is. Measured on 2 cores only: on more, each stream gets half the threads."""
    return 1 if live else 2


def models_dir() -> Path:
    """``$LIVESHARP_MODELS``, else the package's ``weights/`` folder; read on every call."""
    return Path(os.environ.get("LIVESHARP_MODELS") or SHIPPED_MODELS)


def shipped_weights(name: str) -> Path:
    """Where the trained weights of a named variant live.

    >>> shipped_weights("tiny").name
    'livesharp-tiny.pt'
    """
    return models_dir() / f"livesharp-{name}.pt"


def shipped_stage(name: str) -> Path:
    """The detail stage fit on a variant's weights (``livesharp.detail``), JSON beside them.

    >>> shipped_stage("tiny").name
    'livesharp-tiny.detail.json'
    """
    return models_dir() / f"livesharp-{name}.detail.json"


def shipped_graph(name: str) -> Path:
    """The uint8-frame ONNX graph shipped beside a variant's weights (what runs without torch).

    >>> shipped_graph("tiny").name
    'livesharp-tiny.onnx'
    """
    return models_dir() / f"livesharp-{name}.onnx"

"""livesharp: real-time sharpening for live and recorded video.

>>> from livesharp import Sharpener, process_file
>>> s = Sharpener(model="unsharp", device="cpu")
"""

import os

# OpenMP threads spin for a long time while idle by default; on a 2-core machine that spinning
# starves the decode and encode threads (768x432 file mode: 3.4 FPS). Never spinning
# (OMP_WAIT_POLICY=PASSIVE) fixes that but halves the network's own speed, since every small
# op then pays a wake-up. A short spin keeps both (720p, 2 cores: model 5.6 -> 13-15 FPS,
# file mode 8.9 -> 8-10 FPS vs PASSIVE). Takes effect only before torch loads OpenMP.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from .engine import Sharpener  # noqa: E402
from .errors import LivesharpError  # noqa: E402
from .pipeline import process_file, process_image  # noqa: E402

try:
    __version__ = version("livesharp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["Sharpener", "LivesharpError", "process_file", "process_image", "__version__"]

"""livesharp: real-time sharpening for live and recorded video.

>>> from livesharp import Sharpener, process_file
>>> s = Sharpener(model="unsharp", device="cpu")
"""

import os

# OpenMP threads spin while idle by default; on a 2-core machine that spinning starves the
# decode and encode threads (measured: 3.4 -> 19 FPS end to end at 768x432). Must be set
# before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from .engine import Sharpener  # noqa: E402
from .errors import LivesharpError  # noqa: E402
from .pipeline import process_file, process_image  # noqa: E402

try:
    __version__ = version("livesharp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["Sharpener", "LivesharpError", "process_file", "process_image", "__version__"]

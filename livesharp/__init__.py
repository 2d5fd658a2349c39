"""livesharp: real-time sharpening for live and recorded video.

Importing the package loads nothing heavy and changes nothing: ``Sharpener``, ``process_file``,
``process_image`` and ``run_live`` are imported (with torch, OpenCV and PyAV) on first use. To run the
network on the CPU beside decoding or capture as the CLI does, call
``livesharp.settings.apply_thread_policy()`` before anything imports torch.

>>> from livesharp import Sharpener, process_file
>>> s = Sharpener(model="unsharp", device="cpu")
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from .errors import LivesharpError

try:
    __version__ = version("livesharp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# The public names that need torch, and the module each lives in.
_LAZY = {"Sharpener": "engine", "process_file": "pipeline", "process_image": "pipeline", "run_live": "live"}

__all__ = ["Sharpener", "LivesharpError", "process_file", "process_image", "run_live", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
